"""Rebuild one account's revenue ledger from stored Stripe objects, without calling Stripe.

Every stored invoice line is classified (metrics/classify.py), normalized to a monthly amount (metrics/mrr.py)
and converted to the reporting currency at the rate in force on its period start; the subscription's current
items add the lines not yet invoiced (`upcoming:` ids). Then the month-start snapshot history and today's
snapshot are recomputed. History is restated from what is known now: the ledger is replaced as a whole, so a
rerun over the same data gives the same figures, and a changed old object changes them after the next sync +
rebuild.

Rows are read with one joined query and written with bulk inserts; snapshots are one INSERT ... SELECT per
batch of days (worker/mrr_queries.py), never per-row ORM work.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.engine import Connection, Engine

from integrations.stripe.models import (
    StripeInvoice,
    StripeInvoiceLine,
    StripePrice,
    StripeSubscription,
    StripeSubscriptionItem,
    SyncState,
)
from metrics.classify import RECURRING, classify, invoice_exclusion
from metrics.ledger import ClassifiedLine, FxRate, LedgerBuild, MrrSnapshot, SnapshotDay
from metrics.mrr import convert, monthly_ratio, round_div
from metrics.rates import Rate, RateTable
from metrics.records import LineRecord
from worker.models import Account
from worker.mrr_queries import bulk_insert, ensure_snapshots, month_starts

__all__ = ["RebuildResult", "rebuild_account", "ensure_snapshots", "ensure_ledger", "ledger_is_stale"]

MISSING_RATE = "missing_rate"
COUNTING_SUBSCRIPTION = frozenset({"active", "past_due", "unpaid"})
BATCH = 5_000


@dataclass
class RebuildResult:
    account: str
    lines: int = 0
    by_class: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    excluded: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    upcoming: int = 0
    snapshot_days: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class _Sub:
    customer_id: str
    status: str
    ended_at: int | None
    cancel_at: int | None
    period: tuple[int | None, int | None]


def _t(table: Any) -> Any:
    return table.__table__


def _day(ts: int) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def load_rates(conn: Connection) -> RateTable:
    fx = _t(FxRate)
    return RateTable(
        Rate(r.day, r.currency, r.rate) for r in conn.execute(select(fx.c.day, fx.c.currency, fx.c.rate))
    )


def _records(conn: Connection, account_id: int) -> Iterator[LineRecord]:
    """Stored lines joined with their invoice and price, as records the pure classifier reads."""
    li, inv, pr = _t(StripeInvoiceLine), _t(StripeInvoice), _t(StripePrice)
    query = (
        select(
            li.c.id,
            li.c.invoice_id,
            li.c.customer_id,
            inv.c.customer_id.label("inv_customer"),
            li.c.currency,
            inv.c.currency.label("inv_currency"),
            li.c.amount,
            li.c.discount_total,
            li.c.inclusive_tax,
            li.c.period_start,
            li.c.period_end,
            inv.c.status,
            inv.c.created,
            li.c.parent_type,
            li.c.legacy_type,
            li.c.proration,
            li.c.price_id,
            li.c.product_id,
            pr.c.product_id.label("price_product"),
            pr.c.type.label("price_type"),
            pr.c.interval,
            pr.c.interval_count,
            pr.c.usage_type,
            li.c.subscription_id,
            inv.c.subscription_id.label("inv_subscription"),
            li.c.subscription_item_id,
            li.c.quantity,
        )
        .select_from(
            li.outerjoin(
                inv, and_(inv.c.account_id == li.c.account_id, inv.c.id == li.c.invoice_id)
            ).outerjoin(pr, and_(pr.c.account_id == li.c.account_id, pr.c.id == li.c.price_id))
        )
        .where(li.c.account_id == account_id)
        .order_by(li.c.id)
    )
    for (
        line_id,
        invoice_id,
        customer,
        inv_customer,
        currency,
        inv_currency,
        amount,
        discount_total,
        inclusive_tax,
        period_start,
        period_end,
        status,
        created,
        parent_type,
        legacy_type,
        proration,
        price_id,
        product_id,
        price_product,
        price_type,
        interval,
        interval_count,
        usage_type,
        subscription_id,
        inv_subscription,
        subscription_item_id,
        quantity,
    ) in conn.execute(query.execution_options(yield_per=BATCH)):
        start = period_start if period_start is not None else (created or 0)
        yield LineRecord(
            line_id,
            invoice_id,
            customer or inv_customer or "",
            (currency or inv_currency or "").lower(),
            amount or 0,
            start,
            period_end if period_end is not None else start,
            status,
            created,
            discount_total or 0,
            inclusive_tax or 0,
            parent_type,
            legacy_type,
            bool(proration),
            price_id,
            product_id or price_product,
            price_type,
            interval,
            interval_count,
            usage_type,
            subscription_id or inv_subscription,
            subscription_item_id,
            quantity,
        )  # positional, in LineRecord's field order: this loop runs once per stored line


def _subscriptions(conn: Connection, account_id: int) -> dict[str, _Sub]:
    s = _t(StripeSubscription)
    rows = conn.execute(
        select(
            s.c.id,
            s.c.customer_id,
            s.c.status,
            s.c.ended_at,
            s.c.canceled_at,
            s.c.cancel_at,
            s.c.current_period_start,
            s.c.current_period_end,
        ).where(s.c.account_id == account_id)
    )
    subs = {}
    for r in rows:
        ended = r.ended_at if r.ended_at is not None else (r.canceled_at if r.status == "canceled" else None)
        subs[r.id] = _Sub(
            r.customer_id, r.status, ended, r.cancel_at, (r.current_period_start, r.current_period_end)
        )
    return subs


class _Builder:
    """Turns records into ledger rows for one account (class, exclusion, monthly and reporting amounts)."""

    def __init__(self, account: Account, rates: RateTable, result: RebuildResult) -> None:
        self.account = account
        self.reporting = account.reporting_currency.lower()
        self.rates = rates
        self.result = result

    def row(
        self, record: LineRecord, klass: str, reason: str, excluded: str | None, mrr_end: int
    ) -> dict[str, Any]:
        num, den = monthly_ratio(record) if klass == RECURRING else (0, 1)
        rate = (
            None
            if record.currency == self.reporting
            else self.rates.rate_on(record.currency, _day(record.period_start))
        )
        monthly_reporting = convert(num, den, record.currency, self.reporting, rate)
        amount_reporting = convert(record.net_amount, 1, record.currency, self.reporting, rate)
        if monthly_reporting is None and excluded is None:
            excluded = MISSING_RATE
        counted = excluded is None
        self.result.lines += 1
        self.result.by_class[klass] += 1
        if excluded:
            self.result.excluded[excluded] += 1
        return {
            "account_id": self.account.id,
            "line_id": record.id,
            "invoice_id": record.invoice_id,
            "customer_id": record.customer_id,
            "klass": klass,
            "reason": reason,
            "counted": counted,
            "excluded_reason": excluded,
            "period_start": record.period_start,
            "period_end": record.period_end,
            "currency": record.currency,
            "net_amount": record.net_amount,
            "monthly_amount": round_div(num, den),
            "monthly_reporting": monthly_reporting,
            "amount_reporting": amount_reporting,
            "product_id": record.product_id,
            "price_id": record.price_id,
            "usage_type": record.usage_type,
            "subscription_id": record.subscription_id,
            "subscription_item_id": record.subscription_item_id,
            "invoice_status": record.invoice_status,
            "invoiced_at": record.invoiced_at,
            "mrr_end": mrr_end,
            "quantity": record.quantity,
        }


def _classified(conn: Connection, builder: _Builder, subs: dict[str, _Sub]) -> list[dict[str, Any]]:
    rows = []
    for record in _records(conn, builder.account.id or 0):
        if not record.customer_id or not record.currency:
            builder.result.problems.append(
                f"account {builder.account.name}: line {record.id} (invoice {record.invoice_id}) has no "
                f"{'customer' if not record.customer_id else 'currency'}; left out"
            )
            continue
        c = classify(record)
        mrr_end = record.period_end
        sub = subs.get(record.subscription_id or "")
        if sub is not None and sub.ended_at is not None:
            mrr_end = max(record.period_start, min(mrr_end, sub.ended_at))  # no MRR once canceled
        rows.append(builder.row(record, c.klass, c.reason, invoice_exclusion(record), mrr_end))
    return rows


def _upcoming(
    conn: Connection, builder: _Builder, subs: dict[str, _Sub], rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Lines for the current period not invoiced yet (METRICS.md section 3) and plan changes within it.

    Licensed items count at the subscription's current items from the change (the latest proration in the
    period, else the period start); invoiced licensed lines of that period stop there. Metered items with no
    line for the current period carry the last billed period's amount forward. Only active / past_due / unpaid
    subscriptions.
    """
    it, pr = _t(StripeSubscriptionItem), _t(StripePrice)
    items = conn.execute(
        select(
            it.c.id,
            it.c.subscription_id,
            it.c.price_id,
            it.c.quantity,
            it.c.current_period_start,
            it.c.current_period_end,
            pr.c.product_id,
            pr.c.currency,
            pr.c.unit_amount,
            pr.c.type,
            pr.c.interval,
            pr.c.interval_count,
            pr.c.usage_type,
        )
        .select_from(it.outerjoin(pr, and_(pr.c.account_id == it.c.account_id, pr.c.id == it.c.price_id)))
        .where(it.c.account_id == builder.account.id)
        .order_by(it.c.subscription_id, it.c.id)
    )
    by_sub: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        # prorations tell when a plan changed even on a draft invoice; recurring lines only when they count
        if r["subscription_id"] and (r["klass"] == "proration" or (r["counted"] and r["klass"] == RECURRING)):
            by_sub[r["subscription_id"]].append(r)
    items_by_sub: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        items_by_sub[item.subscription_id].append(item)
    out: list[dict[str, Any]] = []
    for sub_id, sub_items in items_by_sub.items():
        sub = subs.get(sub_id)
        if sub is None or sub.status not in COUNTING_SUBSCRIPTION:
            continue
        out.extend(_upcoming_for(builder, sub_id, sub, sub_items, by_sub.get(sub_id, [])))
    return out


def _upcoming_for(
    builder: _Builder, sub_id: str, sub: _Sub, items: list[Any], lines: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    licensed = [i for i in items if i.usage_type != "metered"]
    start = next((i.current_period_start for i in items if i.current_period_start), None) or sub.period[0]
    end = next((i.current_period_end for i in items if i.current_period_end), None) or sub.period[1]
    if start is None or end is None or end <= start:
        return out
    if sub.cancel_at is not None:
        end = max(start, min(end, sub.cancel_at))
    recurring = [r for r in lines if r["klass"] == RECURRING]
    covering = [
        r for r in recurring if r["usage_type"] != "metered" and r["period_start"] <= start < r["mrr_end"]
    ]
    # None -> "" / 0 so that sorting never compares None with a value
    invoiced = sorted((r["price_id"] or "", r["quantity"] or 0) for r in covering)
    current = sorted((i.price_id or "", i.quantity or 0) for i in licensed)
    if licensed and invoiced != current:
        changes = [
            r["period_start"] for r in lines if r["klass"] == "proration" and start <= r["period_start"] < end
        ]
        change_at = max(changes, default=start)
        for r in covering:
            r["mrr_end"] = max(r["period_start"], min(r["mrr_end"], change_at))
        for i in licensed:
            if i.unit_amount is None:
                builder.result.problems.append(
                    f"account {builder.account.name}: subscription item {i.id} has a "
                    f"price without unit_amount; its upcoming period is left out"
                )
                continue
            out.append(
                _upcoming_row(
                    builder,
                    sub,
                    i,
                    i.unit_amount * (i.quantity or 0),
                    (change_at, end),
                    "current subscription item (period not invoiced yet or plan changed)",
                )
            )
    for i in items:
        if i.usage_type != "metered":
            continue
        mine = [
            r
            for r in recurring
            if r["usage_type"] == "metered"
            and (
                r["subscription_item_id"] == i.id or (i.price_id is not None and r["price_id"] == i.price_id)
            )
        ]
        if any(r["period_start"] <= start < r["mrr_end"] for r in mine) or not mine:
            continue
        last = max(mine, key=lambda r: r["period_start"])
        out.append(
            _upcoming_row(
                builder,
                sub,
                i,
                last["net_amount"],
                (start, end),
                f"metered usage carried forward from line {last['line_id']}",
            )
        )
    return out


def _upcoming_row(
    builder: _Builder, sub: _Sub, item: Any, amount: int, period: tuple[int, int], reason: str
) -> dict[str, Any]:
    record = LineRecord(
        id=f"upcoming:{item.id}:{period[0]}",
        invoice_id="(upcoming)",
        customer_id=sub.customer_id,
        currency=(item.currency or builder.reporting).lower(),
        amount=amount,
        period_start=period[0],
        period_end=period[1],
        invoice_status=None,
        price_id=item.price_id,
        product_id=item.product_id,
        price_type=item.type,
        interval=item.interval,
        interval_count=item.interval_count,
        usage_type=item.usage_type,
        subscription_id=item.subscription_id,
        subscription_item_id=item.id,
        quantity=item.quantity,
    )
    builder.result.upcoming += 1
    return builder.row(record, RECURRING, reason, None, period[1])


def rebuild_account(engine: Engine, account: Account, today: date | None = None) -> RebuildResult:
    """Classify every stored line of the account into ledger_line and recompute its snapshots."""
    today = today or datetime.now(UTC).date()
    result = RebuildResult(account=account.name)
    with engine.begin() as conn:
        builder = _Builder(account, load_rates(conn), result)
        subs = _subscriptions(conn, account.id or 0)
        rows = _classified(conn, builder, subs)
        rows.extend(_upcoming(conn, builder, subs, rows))
        for table in (ClassifiedLine, MrrSnapshot, SnapshotDay):
            conn.execute(delete(_t(table)).where(_t(table).c.account_id == account.id))
        columns = list(_t(ClassifiedLine).c.keys())
        for i in range(0, len(rows), BATCH):
            bulk_insert(conn, "ledger_line", columns, ([r[c] for c in columns] for r in rows[i : i + BATCH]))
        _record_build(conn, account.id or 0)
    starts = [r["period_start"] for r in rows if r["klass"] == RECURRING and r["counted"]]
    days = month_starts(_day(min(starts)), today) if starts else []
    days = sorted(set(days) | {today})
    ensure_snapshots(engine, account, days)
    result.snapshot_days = len(days)
    return result


def _last_sync_at(conn: Connection, account_id: int) -> int | None:
    st = _t(SyncState)
    return conn.execute(select(st.c.last_sync_at).where(st.c.account_id == account_id)).scalar()


def _record_build(conn: Connection, account_id: int) -> None:
    lb = _t(LedgerBuild)
    conn.execute(delete(lb).where(lb.c.account_id == account_id))
    conn.execute(
        insert(lb).values(
            account_id=account_id, built_at=int(time.time()), sync_at=_last_sync_at(conn, account_id)
        )
    )


def ledger_is_stale(engine: Engine, account: Account) -> bool:
    """True when stored lines exist but the ledger was never built, or a sync ran after the last build."""
    lb, li = _t(LedgerBuild), _t(StripeInvoiceLine)
    with engine.connect() as conn:
        build = conn.execute(select(lb.c.sync_at).where(lb.c.account_id == account.id)).first()
        if build is None:
            return (
                conn.execute(select(li.c.id).where(li.c.account_id == account.id).limit(1)).first()
                is not None
            )
        last_sync = _last_sync_at(conn, account.id or 0)
    return last_sync is not None and (build.sync_at is None or last_sync > build.sync_at)


def ensure_ledger(engine: Engine, account: Account, today: date | None = None) -> RebuildResult | None:
    """Rebuild when the ledger is stale (see ledger_is_stale), so figures right after a sync are current."""
    if ledger_is_stale(engine, account):
        return rebuild_account(engine, account, today)
    return None


def describe(result: RebuildResult) -> str:
    """One line for the terminal."""
    classes = ", ".join(f"{n} {k}" for k, n in sorted(result.by_class.items()))
    left = ", ".join(f"{n} {k}" for k, n in sorted(result.excluded.items())) or "none"
    return (
        f"{result.account}: {result.lines} lines ({classes}); left out: {left}; "
        f"{result.upcoming} upcoming; {result.snapshot_days} snapshot days"
    )
