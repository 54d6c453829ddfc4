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
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.engine import Connection, Engine

from integrations.stripe.models import (
    StripeInvoice,
    StripeInvoiceLine,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionItem,
    SyncState,
)
from metrics.classify import ONE_TIME, PRORATION, RECURRING, classify, invoice_exclusion
from metrics.ledger import ClassifiedLine, FxRate, LedgerBuild, MrrSnapshot, SnapshotDay
from metrics.mrr import EntryRow, convert, months_of_period, round_div
from metrics.rates import Rate, RateTable
from metrics.records import LineRecord
from worker.models import Account
from worker.mrr_queries import (
    bulk_insert,
    ensure_snapshots,
    month_starts,
    points_for,
    raw_rows,
    write_snapshots,
)

__all__ = ["RebuildResult", "rebuild_account", "ensure_snapshots", "ensure_ledger", "ledger_is_stale"]

MISSING_RATE = "missing_rate"
COUNTING_SUBSCRIPTION = frozenset({"active", "past_due", "unpaid"})
BATCH = 5_000

_LEDGER_TABLE: Any = getattr(ClassifiedLine, "__table__")  # noqa: B009
# A ledger row is a list in ledger_line's column order (LEDGER_COLUMNS), plus the line's quantity at the end
# (read by the upcoming-period check, not stored): per-line dicts cost more than classifying did.
LEDGER_COLUMNS = (
    "account_id",
    "line_id",
    "invoice_id",
    "customer_id",
    "klass",
    "reason",
    "counted",
    "excluded_reason",
    "period_start",
    "period_end",
    "currency",
    "net_amount",
    "monthly_amount",
    "monthly_reporting",
    "amount_reporting",
    "product_id",
    "price_id",
    "usage_type",
    "subscription_id",
    "subscription_item_id",
    "invoice_status",
    "invoiced_at",
    "mrr_end",
)
if tuple(_LEDGER_TABLE.c.keys()) != LEDGER_COLUMNS:  # _Builder.line writes rows in this order
    raise RuntimeError("LEDGER_COLUMNS must list ledger_line's columns in the table's order")
LINE_ID, CUSTOMER_ID, KLASS, COUNTED, PERIOD_START, NET_AMOUNT = 1, 3, 4, 6, 8, 11
MONTHLY_REPORTING, AMOUNT_REPORTING, PRODUCT_ID, PRICE_ID, USAGE_TYPE = 13, 14, 15, 16, 17
SUBSCRIPTION_ID, SUBSCRIPTION_ITEM_ID, INVOICED_AT, MRR_END, QUANTITY = 18, 19, 21, 22, 23
Row = list[Any]


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


_NO_INVOICE: tuple[Any, ...] = (None,) * 5
_NO_PRICE: tuple[Any, ...] = (None,) * 5


def _records(conn: Connection, account_id: int) -> Iterator[tuple[Any, ...]]:
    """Stored lines with their invoice's and price's fields (outer joins), in line id order, as tuples:
    the line's columns as selected, then the invoice's five, then the price's five.

    The joins are done here from two dicts rather than in SQL: SQLite's nested loop seeks the invoice table
    (wide rows with the raw JSON) once per line, twice the time of reading both tables once.
    """
    li, inv, pr = _t(StripeInvoiceLine), _t(StripeInvoice), _t(StripePrice)
    invoices = {
        r[0]: r[1:]
        for r in raw_rows(
            conn,
            select(
                inv.c.id,
                inv.c.customer_id,
                inv.c.currency,
                inv.c.status,
                inv.c.created,
                inv.c.subscription_id,
            ).where(inv.c.account_id == account_id),
        )
    }
    prices = {
        r[0]: r[1:]
        for r in raw_rows(
            conn,
            select(
                pr.c.id,
                pr.c.product_id,
                pr.c.type,
                pr.c.interval,
                pr.c.interval_count,
                pr.c.usage_type,
            ).where(pr.c.account_id == account_id),
        )
    }
    lines = (
        select(
            li.c.id,
            li.c.invoice_id,
            li.c.customer_id,
            li.c.currency,
            li.c.amount,
            li.c.discount_total,
            li.c.inclusive_tax,
            li.c.period_start,
            li.c.period_end,
            li.c.parent_type,
            li.c.legacy_type,
            li.c.proration,
            li.c.price_id,
            li.c.product_id,
            li.c.subscription_id,
            li.c.subscription_item_id,
            li.c.quantity,
        )
        .where(li.c.account_id == account_id)
        .order_by(li.c.id)
    )
    no_invoice, no_price = _NO_INVOICE, _NO_PRICE
    for row in raw_rows(conn, lines):  # row[1] is the invoice id, row[12] the price id
        yield row + invoices.get(row[1], no_invoice) + prices.get(row[12], no_price)


def _subscriptions(conn: Connection, account_id: int) -> dict[str, _Sub]:
    s = _t(StripeSubscription)
    query = select(
        s.c.id,
        s.c.customer_id,
        s.c.status,
        s.c.ended_at,
        s.c.canceled_at,
        s.c.cancel_at,
        s.c.current_period_start,
        s.c.current_period_end,
    ).where(s.c.account_id == account_id)
    subs = {}
    for sub_id, customer_id, status, ended_at, canceled_at, cancel_at, period_start, period_end in raw_rows(
        conn, query
    ):
        ended = ended_at if ended_at is not None else (canceled_at if status == "canceled" else None)
        subs[sub_id] = _Sub(customer_id, status, ended, cancel_at, (period_start, period_end))
    return subs


class _Item(NamedTuple):
    """A subscription item with its price (the columns of _upcoming's query, in order)."""

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


class _Builder:
    """Turns lines into ledger rows for one account (class, exclusion, monthly and reporting amounts)."""

    def __init__(self, account: Account, rates: RateTable, result: RebuildResult) -> None:
        self.account = account
        self.account_id = account.id  # read once: a SQLModel attribute costs a descriptor call per line
        self.reporting = account.reporting_currency.lower()
        self.rates = rates
        self.result = result
        self._rate_cache: dict[tuple[str, int], Decimal | None] = {}

    def rate(self, currency: str, period_start: int) -> Decimal | None:
        """The rate in force on the period start's day (cached: lines share a few currencies and days)."""
        key = (currency, period_start)
        try:
            return self._rate_cache[key]
        except KeyError:
            rate = self._rate_cache[key] = self.rates.rate_on(currency, _day(period_start))
            return rate

    def row(self, record: LineRecord, klass: str, reason: str, excluded: str | None, mrr_end: int) -> Row:
        return self.line(
            record.id,
            record.invoice_id,
            record.customer_id,
            record.currency,
            record.net_amount,
            record.period_start,
            record.period_end,
            klass,
            reason,
            excluded,
            mrr_end,
            record.product_id,
            record.price_id,
            record.usage_type,
            record.subscription_id,
            record.subscription_item_id,
            record.invoice_status,
            record.invoiced_at,
            record.interval,
            record.interval_count,
            record.quantity,
        )

    def line(
        self,
        line_id: str,
        invoice_id: str,
        customer_id: str,
        currency: str,
        net: int,
        start: int,
        end: int,
        klass: str,
        reason: str,
        excluded: str | None,
        mrr_end: int,
        product_id: str | None,
        price_id: str | None,
        usage_type: str | None,
        subscription_id: str | None,
        subscription_item_id: str | None,
        status: str | None,
        invoiced_at: int | None,
        interval: str | None,
        interval_count: int | None,
        quantity: int | None,
    ) -> Row:
        """One ledger row (LEDGER_COLUMNS order, then quantity); `currency` is lower case."""
        num, den = 0, 1
        if klass == RECURRING:
            months = months_of_period(interval, interval_count, start, end)
            if months is not None:
                num, den = net * months[1], months[0]
        monthly = round_div(num, den)
        monthly_reporting: int | None
        amount_reporting: int | None
        if currency == self.reporting:
            monthly_reporting, amount_reporting = monthly, net  # convert() without a rate: rounded once
        else:
            rate = self.rate(currency, start)
            monthly_reporting = convert(num, den, currency, self.reporting, rate)
            amount_reporting = convert(net, 1, currency, self.reporting, rate)
        if monthly_reporting is None and excluded is None:
            excluded = MISSING_RATE
        result = self.result
        result.lines += 1
        result.by_class[klass] += 1
        if excluded:
            result.excluded[excluded] += 1
        return [
            self.account_id,
            line_id,
            invoice_id,
            customer_id,
            klass,
            reason,
            excluded is None,
            excluded,
            start,
            end,
            currency,
            net,
            monthly,
            monthly_reporting,
            amount_reporting,
            product_id,
            price_id,
            usage_type,
            subscription_id,
            subscription_item_id,
            status,
            invoiced_at,
            mrr_end,
            quantity,
        ]


def _classified(conn: Connection, builder: _Builder, subs: dict[str, _Sub]) -> list[Row]:
    """Every stored line as a ledger row. The class depends on five fields only and the exclusion on the
    invoice status, so both are computed once per distinct value (classify() stays the definition)."""
    rows: list[Row] = []
    append = rows.append
    line = builder.line
    classes: dict[tuple[bool, str | None, str | None, str | None, str | None], tuple[str, str]] = {}
    exclusions: dict[str | None, str | None] = {}
    ended = {sub_id: sub.ended_at for sub_id, sub in subs.items() if sub.ended_at is not None}
    for (
        line_id,
        invoice_id,
        customer,
        currency,
        amount,
        discount_total,
        inclusive_tax,
        period_start,
        period_end,
        parent_type,
        legacy_type,
        proration,
        price_id,
        product_id,
        subscription_id,
        subscription_item_id,
        quantity,
        inv_customer,
        inv_currency,
        status,
        created,
        inv_subscription,
        price_product,
        price_type,
        interval,
        interval_count,
        usage_type,
    ) in _records(conn, builder.account.id or 0):
        customer = customer or inv_customer or ""
        currency = (currency or inv_currency or "").lower()
        if not customer or not currency:
            builder.result.problems.append(
                f"account {builder.account.name}: line {line_id} (invoice {invoice_id}) has no "
                f"{'customer' if not customer else 'currency'}; left out"
            )
            continue
        start = period_start if period_start is not None else (created or 0)
        end = period_end if period_end is not None else start
        subscription_id = subscription_id or inv_subscription
        proration = bool(proration)
        key = (proration, parent_type, legacy_type, price_type, price_id)
        c = classes.get(key)
        if c is None:
            got = classify(
                LineRecord(
                    line_id,
                    invoice_id,
                    customer,
                    currency,
                    amount or 0,
                    start,
                    end,
                    parent_type=parent_type,
                    legacy_type=legacy_type,
                    proration=proration,
                    price_id=price_id,
                    price_type=price_type,
                )
            )
            c = classes[key] = (got.klass, got.reason)
        if status in exclusions:
            excluded = exclusions[status]
        else:
            excluded = exclusions[status] = invoice_exclusion(
                LineRecord(line_id, invoice_id, customer, currency, 0, start, end, status)
            )
        mrr_end = end
        sub_end = ended.get(subscription_id or "")
        if sub_end is not None:
            mrr_end = max(start, min(mrr_end, sub_end))  # no MRR once canceled
        append(
            line(
                line_id,
                invoice_id,
                customer,
                currency,
                (amount or 0) - (discount_total or 0) - (inclusive_tax or 0),  # LineRecord.net_amount
                start,
                end,
                c[0],
                c[1],
                excluded,
                mrr_end,
                product_id or price_product,
                price_id,
                usage_type,
                subscription_id,
                subscription_item_id,
                status,
                created,
                interval,
                interval_count,
                quantity,
            )
        )
    return rows


def _upcoming(conn: Connection, builder: _Builder, subs: dict[str, _Sub], rows: list[Row]) -> list[Row]:
    """Lines for the current period not invoiced yet (METRICS.md section 3) and plan changes within it.

    Licensed items count at the subscription's current items from the change (the latest proration in the
    period, else the period start); invoiced licensed lines of that period stop there. Metered items with no
    line for the current period carry the last billed period's amount forward. Only active / past_due / unpaid
    subscriptions.
    """
    it, pr = _t(StripeSubscriptionItem), _t(StripePrice)
    query = (
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
    items = map(_Item._make, raw_rows(conn, query))
    by_sub: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        # prorations tell when a plan changed even on a draft invoice; recurring lines only when they count
        if r[SUBSCRIPTION_ID] and (r[KLASS] == PRORATION or (r[COUNTED] and r[KLASS] == RECURRING)):
            by_sub[r[SUBSCRIPTION_ID]].append(r)
    items_by_sub: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        items_by_sub[item.subscription_id].append(item)
    out: list[Row] = []
    for sub_id, sub_items in items_by_sub.items():
        sub = subs.get(sub_id)
        if sub is None or sub.status not in COUNTING_SUBSCRIPTION:
            continue
        out.extend(_upcoming_for(builder, sub_id, sub, sub_items, by_sub.get(sub_id, [])))
    return out


def _upcoming_for(builder: _Builder, sub_id: str, sub: _Sub, items: list[Any], lines: list[Row]) -> list[Row]:
    out: list[Row] = []
    licensed = [i for i in items if i.usage_type != "metered"]
    start = next((i.current_period_start for i in items if i.current_period_start), None) or sub.period[0]
    end = next((i.current_period_end for i in items if i.current_period_end), None) or sub.period[1]
    if start is None or end is None or end <= start:
        return out
    if sub.cancel_at is not None:
        end = max(start, min(end, sub.cancel_at))
    recurring = [r for r in lines if r[KLASS] == RECURRING]
    covering = [r for r in recurring if r[USAGE_TYPE] != "metered" and r[PERIOD_START] <= start < r[MRR_END]]
    # None -> "" / 0 so that sorting never compares None with a value
    invoiced = sorted((r[PRICE_ID] or "", r[QUANTITY] or 0) for r in covering)
    current = sorted((i.price_id or "", i.quantity or 0) for i in licensed)
    if licensed and invoiced != current:
        changes = [r[PERIOD_START] for r in lines if r[KLASS] == PRORATION and start <= r[PERIOD_START] < end]
        change_at = max(changes, default=start)
        for r in covering:
            r[MRR_END] = max(r[PERIOD_START], min(r[MRR_END], change_at))
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
            if r[USAGE_TYPE] == "metered"
            and (r[SUBSCRIPTION_ITEM_ID] == i.id or (i.price_id is not None and r[PRICE_ID] == i.price_id))
        ]
        if any(r[PERIOD_START] <= start < r[MRR_END] for r in mine) or not mine:
            continue
        last = max(mine, key=lambda r: r[PERIOD_START])
        out.append(
            _upcoming_row(
                builder,
                sub,
                i,
                last[NET_AMOUNT],
                (start, end),
                f"metered usage carried forward from line {last[LINE_ID]}",
            )
        )
    return out


def _upcoming_row(
    builder: _Builder, sub: _Sub, item: Any, amount: int, period: tuple[int, int], reason: str
) -> Row:
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
        _write_ledger(conn, account, rows)
        starts = [r[PERIOD_START] for r in rows if r[KLASS] == RECURRING and r[COUNTED]]
        days = month_starts(_day(min(starts)), today) if starts else []
        days = sorted(set(days) | {today})
        _write_snapshots(conn, account.id or 0, days, rows)
        _record_build(conn, account.id or 0)
    result.snapshot_days = len(days)
    return result


def _write_snapshots(conn: Connection, account_id: int, days: list[date], rows: list[Row]) -> None:
    """The snapshots of these days from the ledger rows just written (what ensure_snapshots would read back
    from ledger_line: counted recurring and one-time lines, by customer, plan = the product's name), in the
    same transaction as the ledger, so the two are never seen apart."""
    p = _t(StripeProduct)
    names = {
        pid: name
        for pid, name in conn.execute(select(p.c.id, p.c.name).where(p.c.account_id == account_id))
        if name is not None
    }
    groups: dict[str, list[EntryRow]] = defaultdict(list)
    for r in rows:
        klass = r[KLASS]
        if r[COUNTED] and klass in (RECURRING, ONE_TIME):
            product = r[PRODUCT_ID]
            groups[r[CUSTOMER_ID]].append(
                (
                    klass,
                    r[PERIOD_START],
                    r[MRR_END],
                    r[MONTHLY_REPORTING] or 0,
                    r[AMOUNT_REPORTING] or 0,
                    r[INVOICED_AT],
                    names.get(product, product),
                    r[LINE_ID],
                )
            )
    write_snapshots(conn, account_id, points_for(days), groups.items())


def _write_ledger(conn: Connection, account: Account, rows: list[Row]) -> None:
    """Replace the account's ledger (and its snapshots, computed from it) with these rows."""
    for table in (ClassifiedLine, MrrSnapshot, SnapshotDay):
        conn.execute(delete(_t(table)).where(_t(table).c.account_id == account.id))
    n = len(LEDGER_COLUMNS)
    for i in range(0, len(rows), BATCH):
        bulk_insert(conn, "ledger_line", LEDGER_COLUMNS, (r[:n] for r in rows[i : i + BATCH]))


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
