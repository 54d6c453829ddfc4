"""Reads of the stored Stripe objects the at-risk signals look at, and the meter usage they keep.

worker/risk.py turns these rows into the records metrics/at_risk.py judges; the queries sit here so that the
signal code never builds SQL over `stripe_*` tables, and so that each read is tested on both databases. Every
function reads one table of one account and returns plain rows (raw JSON is read here and reduced to the
values the signals use). None adds an ORDER BY the callers never relied on: they group the rows per customer.
The reads of a batch's many rows (invoices, line quantities) come straight from the driver
(metrics.tables.raw_rows, customer ids inlined as quoted literals), as billing.py reads: no SQLAlchemy Row
per row, which cost more than the judging done with them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import NamedTuple

from sqlalchemy import BigInteger, ColumnElement, Table, case, cast, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from integrations.stripe import models
from integrations.stripe.meters import MeterUsage
from metrics.tables import raw_rows, table_of


class PriceRow(NamedTuple):
    id: str
    product_id: str | None
    interval: str | None
    meter_id: str | None


class ProductRow(NamedTuple):
    id: str
    name: str | None


class SubscriptionRow(NamedTuple):
    id: str
    customer_id: str
    status: str
    created: int | None
    current_period_start: int | None
    current_period_end: int | None
    cancel_at_period_end: bool
    cancel_at: int | None
    canceled_at: int | None
    ended_at: int | None


class InvoiceRow(NamedTuple):
    id: str
    customer_id: str
    status: str | None
    created: int | None
    attempt_count: int
    amount_due: int | None
    currency: str | None
    resolved_at: int | None  # paid_at / voided_at / marked_uncollectible_at (status_transitions), if sent
    finalized_at: int | None  # status_transitions.finalized_at: payment is attempted from then on


class MeterUsageRow(NamedTuple):
    customer_id: str
    meter_id: str
    start_time: int
    end_time: int
    aggregated_value: float


def prices(conn: Connection, account_id: int, metered_only: bool = False) -> list[PriceRow]:
    """The account's prices; `metered_only` keeps those billed through a Billing Meter."""
    p = table_of(models.StripePrice)
    query = select(p.c.id, p.c.product_id, p.c.interval, p.c.meter_id).where(p.c.account_id == account_id)
    if metered_only:
        query = query.where(p.c.meter_id.is_not(None))
    return [PriceRow(*r) for r in conn.execute(query)]


def products(conn: Connection, account_id: int) -> list[ProductRow]:
    p = table_of(models.StripeProduct)
    query = select(p.c.id, p.c.name).where(p.c.account_id == account_id)
    return [ProductRow(*r) for r in conn.execute(query)]


def subscriptions(
    conn: Connection,
    account_id: int,
    statuses: Collection[str] | None = None,
    customer_ids: Collection[str] | None = None,
) -> list[SubscriptionRow]:
    """The account's subscriptions, ended ones included unless `statuses` narrows them; `customer_ids`
    keeps one batch of customers (the at-risk run reads per batch).

    One Stripe no longer lists (marked deleted by a full sync) reads as canceled and ended when it was found
    gone, so no signal is raised on it and its customer can count as churned."""
    s = table_of(models.StripeSubscription)
    gone = s.c.deleted.is_(True)
    status = case((gone, "canceled"), else_=s.c.status)
    ended_at = case((gone, func.coalesce(s.c.ended_at, s.c.deleted_at)), else_=s.c.ended_at)
    columns = {
        **{name: s.c[name] for name in SubscriptionRow._fields},
        "status": status,
        "ended_at": ended_at,
    }
    query = select(*columns.values()).where(s.c.account_id == account_id)
    if statuses is not None:
        query = query.where(status.in_(list(statuses)))
    if customer_ids is not None:
        query = query.where(s.c.customer_id.in_(list(customer_ids)))
    return [SubscriptionRow(*r) for r in conn.execute(query)]


# When an invoice stopped being owed: paid, voided or written off (Stripe's status_transitions), read in SQL
# so the raw invoice (with its embedded lines) is never loaded for it.
_TRANSITIONS = ("paid_at", "voided_at", "marked_uncollectible_at")


def _transition(v: Table, key: str) -> ColumnElement[int]:
    """status_transitions.<key> of the raw invoice, as a 64-bit integer (Unix seconds outgrow 32 bits)."""
    return cast(v.c.raw[("status_transitions", key)].as_string(), BigInteger)


def failable_invoices(
    conn: Connection, account_id: int, statuses: Collection[str], customer_ids: Collection[str] | None = None
) -> list[InvoiceRow]:
    """The account's invoices in these statuses, of a customer (of the batch, if given), that may ever count
    as a failed payment: an amount due, an attempt made, and not paid at its first attempt.

    Every other invoice (most of them: paid at once) is left out in SQL: metrics/at_risk.py `unpaid_failed`
    is False at every instant for it whatever its dates, and `next_change` skips it, so the signals are the
    same without it, and a customer's three years of paid invoices are never read into Python to be ignored.
    The transitions (`resolved_at`, `finalized_at`) are read from the raw JSON; 0 reads as no date.
    """
    v = table_of(models.StripeInvoice)
    # the very terms of the partial index ix_stripe_invoice_failable, which holds these invoices: a database
    # uses it only where the query's terms imply the index's (one table here, so the names are its own)
    may_fail = text(models.FAILABLE_INVOICE)
    ended = func.coalesce(*(_transition(v, key) for key in _TRANSITIONS))
    query = select(
        v.c.id,
        v.c.customer_id,
        v.c.status,
        v.c.created,
        v.c.attempt_count,
        v.c.amount_due,
        v.c.currency,
        func.nullif(ended, 0),
        func.nullif(_transition(v, "finalized_at"), 0),
    ).where(v.c.account_id == account_id, v.c.status.in_(list(statuses)), may_fail)
    # The batch's ids, else any customer. Never both: SQLite reads `IS NOT NULL` beside the IN list as a range
    # over the (account_id, customer_id) index, and walked every invoice of the account for each batch.
    if customer_ids is not None:
        query = query.where(v.c.customer_id.in_(list(customer_ids)))
    else:
        query = query.where(v.c.customer_id.is_not(None))
    return list(map(InvoiceRow._make, raw_rows(conn, query)))


def newest_invoice_created(conn: Connection, account_id: int) -> int | None:
    """When the newest stored invoice was created: how late the stored state goes, where no sync says it."""
    v = table_of(models.StripeInvoice)
    found = conn.execute(select(func.max(v.c.created)).where(v.c.account_id == account_id)).scalar()
    return None if found is None else int(found)


def usage_meters(conn: Connection, account_id: int) -> list[str]:
    """The meters the account has stored summaries of: read once a run, so that `meter_usage` can reach a
    batch's rows through the table's key (account, meter, customer, period) instead of reading every
    summary of the account for each batch."""
    m = table_of(MeterUsage)
    query = select(m.c.meter_id).where(m.c.account_id == account_id).distinct()
    return sorted(r[0] for r in conn.execute(query))


def meter_usage(
    conn: Connection,
    account_id: int,
    customer_ids: Collection[str] | None = None,
    meter_ids: Collection[str] | None = None,
) -> list[MeterUsageRow]:
    """The stored meter event summaries of the account (of a batch of customers; on these meters, when
    given: `usage_meters` gives them all)."""
    if meter_ids is not None and not meter_ids:
        return []
    m = table_of(MeterUsage)
    query = select(*(m.c[name] for name in MeterUsageRow._fields)).where(m.c.account_id == account_id)
    if meter_ids is not None:
        query = query.where(m.c.meter_id.in_(list(meter_ids)))
    if customer_ids is not None:
        query = query.where(m.c.customer_id.in_(list(customer_ids)))
    return [MeterUsageRow(*r) for r in conn.execute(query)]


def save_meter_usage(conn: Connection, account_id: int, rows: Iterable[MeterUsageRow]) -> None:
    """Insert or update summaries by (meter, customer, period start): a rerun rewrites the same periods.

    A period given twice keeps the last value, as one row per key is all the table can hold.
    """
    latest = {(r.meter_id, r.customer_id, r.start_time): r for r in rows}
    if not latest:
        return
    m = table_of(MeterUsage)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(m)
    stmt = stmt.on_conflict_do_update(
        index_elements=["account_id", "meter_id", "customer_id", "start_time"],
        set_={"end_time": stmt.excluded.end_time, "aggregated_value": stmt.excluded.aggregated_value},
    )
    conn.execute(stmt, [{"account_id": account_id, **r._asdict()} for r in latest.values()])
