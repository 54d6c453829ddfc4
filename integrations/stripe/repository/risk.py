"""Reads of the stored Stripe objects the at-risk signals look at, and the meter usage they keep.

worker/risk.py turns these rows into the records metrics/at_risk.py judges; the queries sit here so that the
signal code never builds SQL over `stripe_*` tables, and so that each read is tested on both databases. Every
function reads one table of one account and returns plain rows (raw JSON is read here and reduced to the
values the signals use). None adds an ORDER BY the callers never relied on: they group the rows per customer.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from integrations.stripe import models
from integrations.stripe.meters import MeterUsage
from metrics.tables import table_of


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
    resolved_at: int | None  # paid_at / voided_at from the stored status_transitions, when Stripe sent them


class LineQuantity(NamedTuple):
    """What a ledger line does not keep of its invoice line: the quantity and the discount."""

    id: str
    quantity: int | None
    discount_total: int


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
    """The account's subscriptions, ended ones included unless `statuses` narrows them (`customer_ids`: only
    those customers', as the same-day watch reads them)."""
    s = table_of(models.StripeSubscription)
    query = select(*(s.c[name] for name in SubscriptionRow._fields)).where(s.c.account_id == account_id)
    if statuses is not None:
        query = query.where(s.c.status.in_(list(statuses)))
    if customer_ids is not None:
        query = query.where(s.c.customer_id.in_(list(customer_ids)))
    return [SubscriptionRow(*r) for r in conn.execute(query)]


def _resolved_at(raw: dict[str, Any]) -> int | None:
    transitions = raw.get("status_transitions") or {}
    value = transitions.get("paid_at") or transitions.get("voided_at")
    return int(value) if value else None


def invoices(
    conn: Connection, account_id: int, statuses: Collection[str], customer_ids: Collection[str] | None = None
) -> list[InvoiceRow]:
    """The account's invoices in these statuses that belong to a customer (`customer_ids`: those only)."""
    v = table_of(models.StripeInvoice)
    query = select(
        v.c.id,
        v.c.customer_id,
        v.c.status,
        v.c.created,
        v.c.attempt_count,
        v.c.amount_due,
        v.c.currency,
        v.c.raw,
    ).where(v.c.account_id == account_id, v.c.status.in_(list(statuses)), v.c.customer_id.is_not(None))
    if customer_ids is not None:
        query = query.where(v.c.customer_id.in_(list(customer_ids)))
    return [InvoiceRow(*r[:-1], _resolved_at(r.raw or {})) for r in conn.execute(query)]


def line_quantities(conn: Connection, account_id: int) -> list[LineQuantity]:
    """Quantity and discount of every stored invoice line of the account."""
    n = table_of(models.StripeInvoiceLine)
    query = select(n.c.id, n.c.quantity, n.c.discount_total).where(n.c.account_id == account_id)
    return [LineQuantity(*r) for r in conn.execute(query)]


def meter_usage(conn: Connection, account_id: int) -> list[MeterUsageRow]:
    """Every stored meter event summary of the account."""
    m = table_of(MeterUsage)
    query = select(*(m.c[name] for name in MeterUsageRow._fields)).where(m.c.account_id == account_id)
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
