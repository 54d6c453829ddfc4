"""Stored Stripe objects: normalized columns for queries beside the raw JSON for re-parsing.

Every table is keyed by (account_id, Stripe id), so a sync is an upsert and two connected accounts never
collide. Times are Unix seconds (UTC) exactly as Stripe sends them; money is integer minor units with its
currency. The raw payload lets a better classifier re-run over history without calling Stripe again."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, text
from sqlmodel import Field, SQLModel


def _raw() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False), repr=False)


def _big(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(BigInteger, nullable=nullable, index=index))


class StripeCustomer(SQLModel, table=True):
    __tablename__ = "stripe_customer"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    id: str = Field(primary_key=True, max_length=255)
    name: str | None = None
    email: str | None = None
    currency: str | None = Field(default=None, max_length=3)
    created: int | None = _big()
    deleted: bool = (
        False  # deleted in Stripe (seen so, or no longer listed by a full sync): kept, not counted
    )
    deleted_at: int | None = _big()  # when we learned it (Unix seconds)
    listed_at: int | None = _big()  # the start of the last full sync whose list held it
    raw: dict[str, Any] = _raw()


class StripeProduct(SQLModel, table=True):
    __tablename__ = "stripe_product"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    id: str = Field(primary_key=True, max_length=255)
    name: str | None = None
    active: bool = True
    created: int | None = _big()
    raw: dict[str, Any] = _raw()


class StripePrice(SQLModel, table=True):
    __tablename__ = "stripe_price"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    id: str = Field(primary_key=True, max_length=255)
    product_id: str | None = Field(default=None, max_length=255)
    currency: str | None = Field(default=None, max_length=3)
    unit_amount: int | None = _big()
    type: str | None = Field(default=None, max_length=20)  # recurring | one_time
    interval: str | None = Field(default=None, max_length=10)  # day | week | month | year
    interval_count: int | None = None
    usage_type: str | None = Field(default=None, max_length=10)  # licensed | metered
    meter_id: str | None = Field(default=None, max_length=255)
    active: bool = True
    created: int | None = _big()
    raw: dict[str, Any] = _raw()


class StripeSubscription(SQLModel, table=True):
    __tablename__ = "stripe_subscription"
    # a rebuild reads a batch of customers' subscriptions: without the account in the index, SQLite walks the
    # account's whole primary key for each batch (quadratic in customers)
    __table_args__ = (Index("ix_stripe_subscription_customer", "account_id", "customer_id"),)
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    id: str = Field(primary_key=True, max_length=255)
    customer_id: str = Field(max_length=255)  # indexed with the account (above): every query names both
    status: str = Field(max_length=30)
    currency: str | None = Field(default=None, max_length=3)
    created: int | None = _big()
    start_date: int | None = _big()
    current_period_start: int | None = _big()
    current_period_end: int | None = _big()
    cancel_at: int | None = _big()
    cancel_at_period_end: bool = False
    canceled_at: int | None = _big()
    ended_at: int | None = _big()
    trial_end: int | None = _big()
    deleted: bool = False  # no longer listed by a full sync (status=all lists every one Stripe keeps)
    deleted_at: int | None = _big()  # when a full sync found it gone (Unix seconds)
    listed_at: int | None = _big()  # the start of the last full sync whose list held it
    raw: dict[str, Any] = _raw()


class StripeSubscriptionItem(SQLModel, table=True):
    """Current items of a subscription (from `items.data`): the plan in force now, for drafts and signals."""

    __tablename__ = "stripe_subscription_item"
    # a full sync prunes each page's subscriptions' items: with the subscription index alone, SQLite walked
    # every item of the account for each page (quadratic in subscriptions)
    __table_args__ = (Index("ix_stripe_subscription_item_parent", "account_id", "subscription_id"),)
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    id: str = Field(primary_key=True, max_length=255)
    subscription_id: str = Field(max_length=255)  # indexed with the account (above)
    price_id: str | None = Field(default=None, max_length=255)
    quantity: int | None = None
    current_period_start: int | None = _big()
    current_period_end: int | None = _big()
    raw: dict[str, Any] = _raw()


# The invoices that may ever count as a failed payment (an amount due, an attempt made, not paid at the
# first): the partial index below, and integrations/stripe/repository/risk.py `failable_invoices` selects them
# with these same terms, so the databases can use it; a few per cent of an account's invoices.
FAILABLE_INVOICE = "amount_due > 0 AND attempt_count > 0 AND (status != 'paid' OR attempt_count > 1)"


class StripeInvoice(SQLModel, table=True):
    __tablename__ = "stripe_invoice"
    __table_args__ = (
        Index("ix_stripe_invoice_customer", "account_id", "customer_id"),  # as subscriptions'
        # what at-risk and the backtest read for each batch of customers: through the customer index, every
        # invoice of the batch's customers was read from the table (rows spread over it, in sync order) to
        # keep the few that may have failed
        Index(
            "ix_stripe_invoice_failable",
            "account_id",
            "customer_id",
            sqlite_where=text(FAILABLE_INVOICE),
            postgresql_where=text(FAILABLE_INVOICE),
        ),
    )
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    id: str = Field(primary_key=True, max_length=255)
    customer_id: str | None = Field(default=None, max_length=255)  # indexed with the account (above)
    subscription_id: str | None = Field(default=None, max_length=255)
    status: str | None = Field(default=None, max_length=20)  # draft | open | paid | uncollectible | void
    currency: str | None = Field(default=None, max_length=3)
    created: int | None = _big()
    period_start: int | None = _big()
    period_end: int | None = _big()
    billing_reason: str | None = Field(default=None, max_length=50)
    attempt_count: int = 0
    amount_due: int | None = _big()
    amount_paid: int | None = _big()
    total: int | None = _big()
    next_payment_attempt: int | None = _big()
    lines_total_count: int | None = None
    raw: dict[str, Any] = _raw()


class StripeInvoiceLine(SQLModel, table=True):
    """One invoice line in a shape-neutral form: current (`parent`, `pricing`) and older (`type`, `price`)."""

    __tablename__ = "stripe_invoice_line"
    __table_args__ = (
        Index("ix_stripe_invoice_line_customer", "account_id", "customer_id"),
        Index("ix_stripe_invoice_line_parent", "account_id", "invoice_id"),  # as subscription items'
    )
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    id: str = Field(primary_key=True, max_length=255)
    invoice_id: str = Field(max_length=255)  # indexed with the account (above)
    customer_id: str | None = Field(default=None, max_length=255)
    subscription_id: str | None = Field(default=None, max_length=255)
    subscription_item_id: str | None = Field(default=None, max_length=255)
    price_id: str | None = Field(default=None, max_length=255)
    product_id: str | None = Field(default=None, max_length=255)
    currency: str | None = Field(default=None, max_length=3)
    amount: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    discount_total: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    inclusive_tax: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    quantity: int | None = None
    period_start: int | None = _big()
    period_end: int | None = _big()
    parent_type: str | None = Field(
        default=None, max_length=40
    )  # subscription_item_details | invoice_item_details
    legacy_type: str | None = Field(
        default=None, max_length=20
    )  # subscription | invoiceitem (older API versions)
    proration: bool = False
    description: str | None = None
    raw: dict[str, Any] = _raw()


class StripeCreditNote(SQLModel, table=True):
    __tablename__ = "stripe_credit_note"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    id: str = Field(primary_key=True, max_length=255)
    invoice_id: str | None = Field(default=None, max_length=255)
    customer_id: str | None = Field(default=None, max_length=255)
    currency: str | None = Field(default=None, max_length=3)
    amount: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    created: int | None = _big()
    raw: dict[str, Any] = _raw()


class SyncState(SQLModel, table=True):
    """Per-account sync bookkeeping: the events cursor, the resumable checkpoint, the last outcome."""

    __tablename__ = "sync_state"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    mode: str | None = Field(default=None, max_length=20)  # full | incremental
    events_cursor: str | None = Field(default=None, max_length=255)  # newest event id processed
    events_cursor_created: int | None = _big()
    checkpoint: dict[str, Any] = _raw()  # resumable progress of a running full sync
    last_sync_at: int | None = _big()
    last_sync_ok: bool | None = None
    last_error: str | None = None
    rejected: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    requests: int = 0
    # [event id, created] of the events the last read returned that the next read's overlap returns again:
    # skipped there, so the nightly and the watch, sharing this cursor, apply each event once
    events_seen: list[list[Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class PendingChange(SQLModel, table=True):
    """An object an incremental sync stored since the ledger was last built: the rebuild recomputes the ledger
    and snapshots of the customers these name, not the whole account (README, "Incremental rebuild").

    `kind` is customer (a customer whose customer, subscription or invoice objects changed), price or product
    (the rebuild finds the customers billed on it), or all (after a full sync: every customer; object_id "").
    `noted_at` lets a rebuild clear only what it read, never a change noted while it ran.
    """

    __tablename__ = "pending_change"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    kind: str = Field(primary_key=True, max_length=10)
    object_id: str = Field(primary_key=True, max_length=255)
    noted_at: int = Field(sa_column=Column(BigInteger, nullable=False))


# Every table holding Stripe objects (not the sync's own bookkeeping), parents before children: the order a
# copy or a reset of an account's stored objects can follow, for code that treats them all alike.
STRIPE_TABLES: tuple[type[SQLModel], ...] = (
    StripeCustomer,
    StripeProduct,
    StripePrice,
    StripeSubscription,
    StripeSubscriptionItem,
    StripeInvoice,
    StripeInvoiceLine,
    StripeCreditNote,
)
