"""Tables of the revenue ledger: exchange rates, classified lines and MRR snapshots.

Metrics never call Stripe; they read these rows (and the SQL over them). Idempotency lives in the keys: a line
is classified once per (account, line), a snapshot once per (account, customer, day). Lines not yet invoiced
(a subscription's current items, metered usage carried forward) are ledger lines too, with ids starting
`upcoming:`, so every MRR query is one query over one table.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Numeric
from sqlmodel import Field, SQLModel


class FxRate(SQLModel, table=True):
    """An imported rate: 1 `currency` = `rate` `reporting_currency` from `day` on (docs/rates.md).

    Keyed by reporting currency: a rate imported for EUR-reporting accounts never converts a USD-reporting
    one.
    """

    __tablename__ = "fx_rate"
    reporting_currency: str = Field(primary_key=True, max_length=3)
    currency: str = Field(primary_key=True, max_length=3)
    day: date = Field(primary_key=True)
    rate: str = Field(sa_column=Column(Numeric(24, 12), nullable=False))
    imported_at: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False)
    )  # restates ledgers built before


class RateSource(SQLModel, table=True):
    """A downloaded reference-rate history (`retention rates update`), stored in the database so that every
    worker and the command line convert with the same rates; without a row the installation's bundled file
    serves. `attempted_at` and `last_error` record the nightly's daily try, whatever its outcome."""

    __tablename__ = "rate_source"
    name: str = Field(primary_key=True, max_length=20)  # "ecb"
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))  # the CSV, zipped
    digest: str | None = Field(default=None, max_length=64)  # sha256 of data: the parsed copy's cache key
    first_day: date | None = None
    last_day: date | None = None
    fetched_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    url: str | None = Field(default=None, max_length=1000)
    attempted_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    last_error: str | None = Field(default=None, max_length=500)


class ClassifiedLine(SQLModel, table=True):
    """One invoice line with its class, the reason for it and its monthly amount (docs/mrr.md)."""

    __tablename__ = "ledger_line"
    # By customer (a rebuild's batches, explain, the at-risk reads); the further columns let the signup month
    # of each cohort member (metrics/cohort_sql.py: its first counted recurring line paying > 0) be read from
    # the index alone, in period order, instead of from each of its lines (that read 7x faster on SQLite at
    # 20,000 customers, 3x on PostgreSQL at 6,000), with no second index for the rebuild to keep up. The last,
    # mrr_end, does the same for who pays over a span (worker/mrr_queries.py revenue_customers, asked by the
    # at-risk run, the backtest, the digest and the report each night: 0.9 s -> 0.4-0.6 s at 100,000).
    __table_args__ = (
        Index(
            "ix_ledger_line_customer",
            "account_id",
            "customer_id",
            "klass",
            "counted",
            "period_start",
            "monthly_reporting",
            "mrr_end",
        ),
    )
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    line_id: str = Field(primary_key=True, max_length=255)
    invoice_id: str = Field(max_length=255)
    customer_id: str = Field(max_length=255)
    klass: str = Field(max_length=20)  # recurring | proration | one_time
    reason: str
    counted: bool = True  # False when the invoice is draft/void or the rate is missing
    excluded_reason: str | None = None
    period_start: int = Field(sa_column=Column(BigInteger, nullable=False))
    period_end: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    net_amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    monthly_amount: int = Field(sa_column=Column(BigInteger, nullable=False))  # minor units, line currency
    monthly_reporting: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # the net amount in the reporting currency (for one-time amounts); None when the rate is missing
    amount_reporting: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    product_id: str | None = Field(default=None, max_length=255)
    price_id: str | None = Field(default=None, max_length=255)
    usage_type: str | None = Field(default=None, max_length=10)
    subscription_id: str | None = Field(default=None, max_length=255)
    subscription_item_id: str | None = Field(default=None, max_length=255)
    invoice_status: str | None = Field(default=None, max_length=20)
    invoiced_at: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # MRR counts over [period_start, mrr_end): the period, cut short where the subscription ended or the plan
    # changed.
    mrr_end: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # The stored invoice line's quantity and discounts, which the at-risk signals read (seats, usage, a
    # discount running out). Looked up in stripe_invoice_line by id instead, each recurring line cost a random
    # read of that wide table (every customer's lines at 100,000 customers: 12.6-15.1 s, 8.1-9.3 s from here).
    # None and 0 on an upcoming line: no invoice line is stored for it.
    quantity: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    discount_total: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class MrrSnapshot(SQLModel, table=True):
    """MRR of one customer on one day, in reporting-currency minor units (month starts, nightly days)."""

    __tablename__ = "mrr_snapshot"
    __table_args__ = (Index("ix_mrr_snapshot_day", "account_id", "day"),)
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    customer_id: str = Field(primary_key=True, max_length=255)
    day: date = Field(primary_key=True)
    mrr: int = Field(sa_column=Column(BigInteger, nullable=False))
    one_time: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False)
    )  # one-time billed that month
    plan: str | None = Field(default=None, max_length=255)


class SnapshotDay(SQLModel, table=True):
    """Days whose snapshots are computed: a day with no paying customer has no snapshot row but is done."""

    __tablename__ = "mrr_snapshot_day"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    day: date = Field(primary_key=True)


class LedgerBuild(SQLModel, table=True):
    """When an account's ledger was last rebuilt, and from which sync: a newer sync makes it stale."""

    __tablename__ = "ledger_build"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    built_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    sync_at: int | None = Field(
        default=None, sa_column=Column(BigInteger, nullable=True)
    )  # SyncState.last_sync_at
    # what the ledger was built with besides stored objects (reporting currency, rates, ledger format): a
    # rebuild with other inputs recomputes every customer
    inputs: str | None = Field(default=None, max_length=255)
