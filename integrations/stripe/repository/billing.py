"""Reads of what an account was billed and is subscribed to: invoice lines with their invoice and price,
subscriptions, their current items, product names. The ledger rebuild (worker/rebuild.py) reads all of it.

Rows come straight from the driver (metrics.tables.raw_rows) as NamedTuples, which are plain tuples: the
rebuild unpacks a line by position in its hot loop, and a NamedTuple names every position at no extra cost
there. A rebuild reads every line of the account, so these functions never build SQLAlchemy Row objects.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any, NamedTuple

from sqlalchemy import Table, and_, case, select
from sqlalchemy.engine import Connection

from integrations.stripe import models
from metrics.tables import raw_rows, table_of


class StoredLine(NamedTuple):
    """A stored invoice line, then its invoice's fields, then its price's (None where either is not stored).

    Values are as the driver gives them: `proration` is 0/1 on SQLite.
    """

    id: str
    invoice_id: str
    customer_id: str | None
    currency: str | None
    amount: int
    discount_total: int
    inclusive_tax: int
    period_start: int | None
    period_end: int | None
    parent_type: str | None
    legacy_type: str | None
    proration: bool
    price_id: str | None
    product_id: str | None
    subscription_id: str | None
    subscription_item_id: str | None
    quantity: int | None
    # the invoice's
    invoice_customer_id: str | None
    invoice_currency: str | None
    invoice_status: str | None
    invoice_created: int | None
    invoice_subscription_id: str | None
    # the price's
    price_product_id: str | None
    price_type: str | None
    price_interval: str | None
    price_interval_count: int | None
    price_usage_type: str | None


# The line's own columns are StoredLine's first fields, under the same names; then the invoice's and the
# price's columns, in StoredLine's order.
_LINE_COLUMNS = StoredLine._fields[: StoredLine._fields.index("quantity") + 1]
_INVOICE_COLUMNS = ("customer_id", "currency", "status", "created", "subscription_id")
_PRICE_COLUMNS = ("product_id", "type", "interval", "interval_count", "usage_type")
_NO_INVOICE: tuple[Any, ...] = (None,) * len(_INVOICE_COLUMNS)
_NO_PRICE: tuple[Any, ...] = (None,) * len(_PRICE_COLUMNS)


def _by_id(
    conn: Connection, table: Table, account_id: int, columns: tuple[str, ...]
) -> dict[str, tuple[Any, ...]]:
    """These columns of the account's rows of `table`, by Stripe id."""
    query = select(table.c.id, *(table.c[name] for name in columns)).where(table.c.account_id == account_id)
    return {r[0]: r[1:] for r in raw_rows(conn, query)}


def stored_lines(conn: Connection, account_id: int) -> Iterator[StoredLine]:
    """Every stored line of the account with its invoice's and price's fields, in line id order.

    The joins are done here from two dicts rather than in SQL: SQLite's nested loop seeks the invoice table
    (wide rows with the raw JSON) once per line, twice the time of reading both tables once.
    """
    invoices = _by_id(conn, table_of(models.StripeInvoice), account_id, _INVOICE_COLUMNS)
    prices = _by_id(conn, table_of(models.StripePrice), account_id, _PRICE_COLUMNS)
    li = table_of(models.StripeInvoiceLine)
    query = (
        select(*(li.c[name] for name in _LINE_COLUMNS)).where(li.c.account_id == account_id).order_by(li.c.id)
    )
    invoice_of, price_of, new = invoices.get, prices.get, tuple.__new__  # bound once: called per line
    for row in raw_rows(conn, query):  # row[1] is the invoice id, row[12] the price id
        yield new(StoredLine, row + invoice_of(row[1], _NO_INVOICE) + price_of(row[12], _NO_PRICE))


class StoredSubscription(NamedTuple):
    """A subscription's state: who pays, whether and when it ended or will end, its current period, and
    when a full sync found it gone from Stripe (None while Stripe lists it)."""

    id: str
    customer_id: str
    status: str
    ended_at: int | None
    canceled_at: int | None
    cancel_at: int | None
    current_period_start: int | None
    current_period_end: int | None
    deleted_at: int | None


def subscriptions(conn: Connection, account_id: int) -> list[StoredSubscription]:
    """Every stored subscription of the account, whatever its status, deleted ones included."""
    s = table_of(models.StripeSubscription)
    columns = [s.c[name] for name in StoredSubscription._fields[:-1]]
    deleted_at = case((s.c.deleted.is_(True), s.c.deleted_at), else_=None)
    query = select(*columns, deleted_at).where(s.c.account_id == account_id)
    return list(map(StoredSubscription._make, raw_rows(conn, query)))


def deleted_customers(conn: Connection, account_id: int) -> dict[str, int]:
    """When each customer deleted in Stripe was found so, by customer id: nothing of theirs counts after."""
    c = table_of(models.StripeCustomer)
    query = select(c.c.id, c.c.deleted_at).where(
        c.c.account_id == account_id, c.c.deleted.is_(True), c.c.deleted_at.is_not(None)
    )
    return {customer_id: int(at) for customer_id, at in conn.execute(query)}


class PricedItem(NamedTuple):
    """A subscription's current item with its price's fields (None where the price is not stored)."""

    id: str
    subscription_id: str
    price_id: str | None
    quantity: int | None
    current_period_start: int | None
    current_period_end: int | None
    product_id: str | None
    currency: str | None
    unit_amount: int | None
    type: str | None
    interval: str | None
    interval_count: int | None
    usage_type: str | None


_ITEM_COLUMNS = PricedItem._fields[: PricedItem._fields.index("current_period_end") + 1]


def subscription_items(
    conn: Connection,
    account_id: int,
    price_ids: Collection[str] | None = None,
    subscription_ids: Collection[str] | None = None,
) -> list[PricedItem]:
    """Every current subscription item of the account with its price, by subscription then item id; or only
    the items on these prices (the at-risk signals ask for the metered ones), or of these subscriptions (one
    batch of customers)."""
    it, pr = table_of(models.StripeSubscriptionItem), table_of(models.StripePrice)
    price_columns = PricedItem._fields[len(_ITEM_COLUMNS) :]
    query = (
        select(*(it.c[name] for name in _ITEM_COLUMNS), *(pr.c[name] for name in price_columns))
        .select_from(it.outerjoin(pr, and_(pr.c.account_id == it.c.account_id, pr.c.id == it.c.price_id)))
        .where(it.c.account_id == account_id)
        .order_by(it.c.subscription_id, it.c.id)
    )
    if price_ids is not None:
        query = query.where(it.c.price_id.in_(list(price_ids)))
    if subscription_ids is not None:
        query = query.where(it.c.subscription_id.in_(list(subscription_ids)))
    return list(map(PricedItem._make, raw_rows(conn, query)))


def product_names(conn: Connection, account_id: int) -> dict[str, str]:
    """Stored products' names by product id (products without a name are left out)."""
    p = table_of(models.StripeProduct)
    query = select(p.c.id, p.c.name).where(p.c.account_id == account_id, p.c.name.is_not(None))
    return {product_id: name for product_id, name in conn.execute(query)}


def has_lines(conn: Connection, account_id: int) -> bool:
    """Whether any invoice line of the account is stored (one index probe, not a count)."""
    li = table_of(models.StripeInvoiceLine)
    return conn.execute(select(li.c.id).where(li.c.account_id == account_id).limit(1)).first() is not None
