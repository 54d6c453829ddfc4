"""Rebuild one account's revenue ledger from stored Stripe objects, without calling Stripe.

Every stored invoice line is classified (metrics/classify.py), normalized to a monthly amount (metrics/mrr.py)
and converted to the reporting currency at the rate in force on its period start; the subscription's current
items add the lines not yet invoiced (`upcoming:` ids). Then the month-start snapshot history and today's
snapshot are recomputed. History is restated from what is known now: the ledger is replaced as a whole, so a
rerun over the same data gives the same figures, and a changed old object changes them after the next sync +
rebuild.

Stored Stripe rows are read through integrations/stripe/repository/billing.py (plain tuples straight from the
driver); the ledger is written with bulk inserts and snapshots are one INSERT ... SELECT per batch of days
(worker/mrr_queries.py), never per-row ORM work.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import Any, NamedTuple

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, Engine

from integrations.stripe.repository import billing
from integrations.stripe.repository.sync_state import last_sync_at
from metrics.calendar import month_starts_covering, utc_day, utc_now
from metrics.classify import ONE_TIME, PRORATION, RECURRING, classify, invoice_exclusion
from metrics.ledger import ClassifiedLine, LedgerBuild, MrrSnapshot, SnapshotDay
from metrics.mrr import EntryRow, convert, months_of_period, round_div
from metrics.rates import RateTable
from metrics.records import LineRecord
from metrics.tables import table_of
from worker.locks import exclusive
from worker.models import Account
from worker.mrr_queries import bulk_insert, ensure_snapshots, points_for, write_snapshots
from worker.rates import load_rates, rates_changed_at
from worker.settings import Settings

__all__ = ["RebuildResult", "rebuild_account", "ensure_snapshots", "ensure_ledger", "ledger_is_stale"]

MISSING_RATE = "missing_rate"
COUNTING_SUBSCRIPTION = frozenset({"active", "past_due", "unpaid"})
BATCH = 5_000

# A ledger row is a list in ledger_line's column order (LEDGER_COLUMNS), plus the line's quantity at the end
# (read by the upcoming-period check, not stored): per-line dicts cost more than classifying did, and the
# upcoming-period check shortens mrr_end of rows already built.
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
if tuple(table_of(ClassifiedLine).c.keys()) != LEDGER_COLUMNS:  # _Builder.line writes rows in this order
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


class LineFacts(NamedTuple):
    """A line as the ledger stores it, before it is classified and converted: a stored line with the gaps
    filled from its invoice and price, or an upcoming line made from a subscription item.

    `currency` is lower case; `net` is the amount after discounts, without inclusive tax.
    """

    line_id: str
    invoice_id: str
    customer_id: str
    currency: str
    net: int
    start: int
    end: int
    product_id: str | None
    price_id: str | None
    usage_type: str | None
    subscription_id: str | None
    subscription_item_id: str | None
    status: str | None
    invoiced_at: int | None
    interval: str | None
    interval_count: int | None
    quantity: int | None


class _Builder:
    """Turns lines into ledger rows for one account (monthly and reporting amounts, counts by class)."""

    def __init__(self, account: Account, rates: RateTable, result: RebuildResult) -> None:
        self.account = account
        self.account_id = account.id  # read once: a SQLModel attribute costs a descriptor call per line
        self.reporting = account.reporting_currency.lower()
        self.rates = rates
        self.result = result
        self._rate_cache: dict[tuple[str, int], Fraction | None] = {}

    def rate(self, currency: str, period_start: int) -> Fraction | None:
        """The rate in force on the period start's day (cached: lines share a few currencies and days)."""
        key = (currency, period_start)
        try:
            return self._rate_cache[key]
        except KeyError:
            rate = self._rate_cache[key] = self.rates.rate_on(currency, utc_day(period_start))
            return rate

    def problem(self, message: str) -> None:
        """Something left out of the ledger that the operator should hear about."""
        self.result.problems.append(f"account {self.account.name}: {message}")

    def line(self, facts: LineFacts, klass: str, reason: str, excluded: str | None, mrr_end: int) -> Row:
        """One ledger row (LEDGER_COLUMNS order, then quantity)."""
        (
            line_id,
            invoice_id,
            customer_id,
            currency,
            net,
            start,
            end,
            product_id,
            price_id,
            usage_type,
            subscription_id,
            subscription_item_id,
            status,
            invoiced_at,
            interval,
            interval_count,
            quantity,
        ) = facts  # one step, where 17 attribute reads per line would cost more than the rest of this method
        num, den = 0, 1
        if klass == RECURRING:
            months = months_of_period(interval, interval_count, start, end)
            if months is not None:
                num, den = net * months[1], months[0]
        monthly = num if den == 1 else round_div(num, den)  # most lines bill whole months: no call for them
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


# -- building: stored lines ------------------------------------------------------------------------------
# LineFacts(...) runs a Python-level __new__ with 17 arguments; tuple.__new__ builds the same NamedTuple in C,
# which is what keeps the per-line cost of the rebuild where it was before lines had names.
_new_tuple = tuple.__new__


def _facts(line: billing.StoredLine) -> LineFacts:
    """What the ledger stores of a line: the customer, currency, subscription and product the line leaves
    empty come from its invoice or price, a missing period from the invoice's date. Customer or currency is
    "" when neither the line nor its invoice has one."""
    (
        line_id,
        invoice_id,
        customer_id,
        currency,
        amount,
        discount_total,
        inclusive_tax,
        period_start,
        period_end,
        _parent_type,
        _legacy_type,
        _proration,
        price_id,
        product_id,
        subscription_id,
        subscription_item_id,
        quantity,
        invoice_customer_id,
        invoice_currency,
        invoice_status,
        invoice_created,
        invoice_subscription_id,
        price_product_id,
        _price_type,
        price_interval,
        price_interval_count,
        price_usage_type,
    ) = line  # one step per line: reading 22 attributes one by one measurably slows the whole rebuild
    start = period_start if period_start is not None else (invoice_created or 0)
    return _new_tuple(
        LineFacts,
        (
            line_id,
            invoice_id,
            customer_id or invoice_customer_id or "",
            (currency or invoice_currency or "").lower(),
            (amount or 0) - (discount_total or 0) - (inclusive_tax or 0),  # LineRecord.net_amount
            start,
            period_end if period_end is not None else start,
            product_id or price_product_id,
            price_id,
            price_usage_type,
            subscription_id or invoice_subscription_id,
            subscription_item_id,
            invoice_status,
            invoice_created,
            price_interval,
            price_interval_count,
            quantity,
        ),
    )


ClassKey = tuple[bool, str | None, str | None, str | None, str | None]


class _Classes(dict[ClassKey, tuple[str, str]]):
    """The class and reason of each distinct (proration, parent_type, legacy_type, price_type, price_id): the
    only fields classify() reads, so it runs once per distinct value, not once per line (classify() stays the
    definition). A dict, so the lookup of a known key costs no Python call."""

    def __missing__(self, key: ClassKey) -> tuple[str, str]:
        proration, parent_type, legacy_type, price_type, price_id = key
        got = classify(
            LineRecord(
                "",
                "",
                "",
                "",
                0,
                0,
                0,
                parent_type=parent_type,
                legacy_type=legacy_type,
                proration=proration,
                price_id=price_id,
                price_type=price_type,
            )
        )
        found = self[key] = (got.klass, got.reason)
        return found


class _Exclusions(dict[str | None, str | None]):
    """Why lines of an invoice status are left out whatever their class (None: they are not), computed once
    per status: invoice_exclusion() reads nothing else."""

    def __missing__(self, status: str | None) -> str | None:
        found = self[status] = invoice_exclusion(LineRecord("", "", "", "", 0, 0, 0, status))
        return found


def _classified(
    builder: _Builder, lines: Iterable[billing.StoredLine], ended: dict[str, int], gone: dict[str, int]
) -> list[Row]:
    """Every stored line as a ledger row; a line with no customer or currency is left out as a problem.
    `ended` is when each ended (or deleted) subscription ended, `gone` when each customer deleted in Stripe
    was found so: their lines bring no MRR after that."""
    rows: list[Row] = []
    append, line, classes, exclusions = rows.append, builder.line, _Classes(), _Exclusions()
    for stored in lines:
        facts = _facts(stored)
        if not (facts.customer_id and facts.currency):
            missing = "customer" if not facts.customer_id else "currency"
            builder.problem(f"line {facts.line_id} (invoice {facts.invoice_id}) has no {missing}; left out")
            continue
        klass, reason = classes[
            bool(stored.proration), stored.parent_type, stored.legacy_type, stored.price_type, stored.price_id
        ]
        mrr_end = facts.end
        sub_end = ended.get(facts.subscription_id or "")
        if sub_end is not None:
            mrr_end = max(facts.start, min(mrr_end, sub_end))  # no MRR once canceled
        if gone and facts.customer_id in gone:
            mrr_end = max(facts.start, min(mrr_end, gone[facts.customer_id]))  # nor once deleted in Stripe
        append(line(facts, klass, reason, exclusions[facts.status], mrr_end))
    return rows


# -- building: upcoming lines -------------------------------------------------------------------------------
def _subscription_states(
    stored: Iterable[billing.StoredSubscription], gone: dict[str, int]
) -> dict[str, _Sub]:
    """What the rebuild needs of each subscription, by id; a canceled one without `ended_at` ended when it
    was canceled. One Stripe no longer lists, or whose customer was deleted, ended when we found that out
    (unless it had ended before)."""
    subs = {}
    for s in stored:
        ended = s.ended_at if s.ended_at is not None else (s.canceled_at if s.status == "canceled" else None)
        for removed in (s.deleted_at, gone.get(s.customer_id)):
            if removed is not None:
                ended = removed if ended is None else min(ended, removed)
        subs[s.id] = _Sub(
            s.customer_id, s.status, ended, s.cancel_at, (s.current_period_start, s.current_period_end)
        )
    return subs


def _upcoming(
    builder: _Builder, subs: dict[str, _Sub], items: Iterable[billing.PricedItem], rows: list[Row]
) -> list[Row]:
    """Lines for the current period not invoiced yet (docs/mrr.md) and plan changes within it.

    Licensed items count at the subscription's current items from the change (the latest proration in the
    period, else the period start); invoiced licensed lines of that period stop there. Metered items with no
    line for the current period carry the last billed period's amount forward. Only active / past_due / unpaid
    subscriptions.
    """
    by_sub: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        # prorations tell when a plan changed even on a draft invoice; recurring lines only when they count
        if r[SUBSCRIPTION_ID] and (r[KLASS] == PRORATION or (r[COUNTED] and r[KLASS] == RECURRING)):
            by_sub[r[SUBSCRIPTION_ID]].append(r)
    items_by_sub: dict[str, list[billing.PricedItem]] = defaultdict(list)
    for item in items:
        items_by_sub[item.subscription_id].append(item)
    out: list[Row] = []
    for sub_id, sub_items in items_by_sub.items():
        sub = subs.get(sub_id)
        if sub is None or sub.status not in COUNTING_SUBSCRIPTION:
            continue
        out.extend(_upcoming_for(builder, sub, sub_items, by_sub.get(sub_id, [])))
    return out


def _current_period(sub: _Sub, items: list[billing.PricedItem]) -> tuple[int, int] | None:
    """The subscription's current period (from its items, else its own), cut at a scheduled cancellation
    and at its deletion in Stripe; None when there is none left to count."""
    start = next((i.current_period_start for i in items if i.current_period_start), None) or sub.period[0]
    end = next((i.current_period_end for i in items if i.current_period_end), None) or sub.period[1]
    if start is None or end is None or end <= start:
        return None
    if sub.cancel_at is not None:
        end = max(start, min(end, sub.cancel_at))
    if sub.ended_at is not None:  # deleted in Stripe (or its customer was): nothing upcoming after that
        if sub.ended_at <= start:
            return None
        end = min(end, sub.ended_at)
    return start, end


def _upcoming_for(
    builder: _Builder, sub: _Sub, items: list[billing.PricedItem], lines: list[Row]
) -> list[Row]:
    out: list[Row] = []
    licensed = [i for i in items if i.usage_type != "metered"]
    period = _current_period(sub, items)
    if period is None:
        return out
    start, end = period
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
                builder.problem(
                    f"subscription item {i.id} has a price without unit_amount; "
                    "its upcoming period is left out"
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
    builder: _Builder, sub: _Sub, item: billing.PricedItem, amount: int, period: tuple[int, int], reason: str
) -> Row:
    """A recurring ledger row for an item's period not invoiced (yet), at `amount` for the whole period."""
    facts = LineFacts(
        f"upcoming:{item.id}:{period[0]}",
        "(upcoming)",
        sub.customer_id,
        (item.currency or builder.reporting).lower(),
        amount,
        period[0],
        period[1],
        item.product_id,
        item.price_id,
        item.usage_type,
        item.subscription_id,
        item.id,
        None,  # no invoice yet: no status, no invoice date
        None,
        item.interval,
        item.interval_count,
        item.quantity,
    )
    builder.result.upcoming += 1
    return builder.line(facts, RECURRING, reason, None, period[1])


def _ledger_rows(conn: Connection, builder: _Builder) -> list[Row]:
    """The account's ledger: every stored line, then the upcoming ones, as rows (reads, then builds)."""
    account_id = builder.account_id or 0
    gone = billing.deleted_customers(conn, account_id)
    subs = _subscription_states(billing.subscriptions(conn, account_id), gone)
    ended = {sub_id: sub.ended_at for sub_id, sub in subs.items() if sub.ended_at is not None}
    rows = _classified(builder, billing.stored_lines(conn, account_id), ended, gone)
    rows.extend(_upcoming(builder, subs, billing.subscription_items(conn, account_id), rows))
    return rows


# -- writing ----------------------------------------------------------------------------------------------
@exclusive("rebuild")
def rebuild_account(
    engine: Engine, account: Account, today: date | None = None, settings: Settings | None = None
) -> RebuildResult:
    """Classify every stored line of the account into ledger_line and recompute its snapshots.

    Holds the account's lock (worker/locks.py), like a sync: two rebuilds racing on ledger_line collide.
    `settings` says where that lock lives (default: the environment's); the demo passes its own."""
    today = today or utc_now().date()
    result = RebuildResult(account=account.name)
    account_id = account.id or 0
    with engine.begin() as conn:
        rows = _ledger_rows(conn, _Builder(account, load_rates(conn, account.reporting_currency), result))
        _write_ledger(conn, account_id, rows)
        starts = [r[PERIOD_START] for r in rows if r[KLASS] == RECURRING and r[COUNTED]]
        days = month_starts_covering(utc_day(min(starts)), today) if starts else []
        days = sorted(set(days) | {today})
        _write_snapshots(conn, account_id, days, rows)
        _record_build(conn, account_id)
    result.snapshot_days = len(days)
    return result


def _write_snapshots(conn: Connection, account_id: int, days: list[date], rows: list[Row]) -> None:
    """The snapshots of these days from the ledger rows just written (what ensure_snapshots would read back
    from ledger_line: counted recurring and one-time lines, by customer, plan = the product's name), in the
    same transaction as the ledger, so the two are never seen apart."""
    names = billing.product_names(conn, account_id)
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


def _write_ledger(conn: Connection, account_id: int, rows: list[Row]) -> None:
    """Replace the account's ledger (and its snapshots, computed from it) with these rows."""
    for model in (ClassifiedLine, MrrSnapshot, SnapshotDay):
        table = table_of(model)
        conn.execute(delete(table).where(table.c.account_id == account_id))
    n = len(LEDGER_COLUMNS)
    for i in range(0, len(rows), BATCH):
        bulk_insert(conn, "ledger_line", LEDGER_COLUMNS, (r[:n] for r in rows[i : i + BATCH]))


def _record_build(conn: Connection, account_id: int) -> None:
    lb = table_of(LedgerBuild)
    conn.execute(delete(lb).where(lb.c.account_id == account_id))
    conn.execute(
        insert(lb).values(
            account_id=account_id, built_at=int(time.time()), sync_at=last_sync_at(conn, account_id)
        )
    )


def ledger_is_stale(engine: Engine, account: Account) -> bool:
    """True when stored lines exist but the ledger was never built, or a sync ran or the rates changed (an
    import, a download) after the last build."""
    lb = table_of(LedgerBuild)
    account_id = account.id or 0
    with engine.connect() as conn:
        build = conn.execute(select(lb.c.sync_at, lb.c.built_at).where(lb.c.account_id == account_id)).first()
        if build is None:
            return billing.has_lines(conn, account_id)
        last_sync = last_sync_at(conn, account_id)
        rates_at = rates_changed_at(conn, account.reporting_currency)  # an import or a download restates
    if rates_at is not None and rates_at >= build.built_at:  # the same second: rebuild once more, to be sure
        return True
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
