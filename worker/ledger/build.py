"""Ledger rows of a batch of customers, from their stored objects (worker/ledger/read.py), without I/O.

Every stored invoice line is classified (metrics/classify.py), normalized to a monthly amount
(metrics/mrr.py) and converted to the reporting currency at the rate in force on its period start
(Builder.line, the one place lines are converted); the subscription's current items add the lines not yet
invoiced (`upcoming:` ids) and cut short the invoiced lines a plan change replaced.

Rows are LedgerRow NamedTuples built with tuple.__new__ (as fast as the lists they replace) and unpacked in
one step where a loop reads many fields: the rebuild's speed is per-line Python work.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

from integrations.stripe.repository import billing
from metrics.calendar import utc_day
from metrics.classify import PRORATION, RECURRING, classify, invoice_exclusion
from metrics.ledger import ClassifiedLine
from metrics.mrr import convert, months_of_period, round_div
from metrics.rates import RateTable
from metrics.records import LineRecord
from metrics.tables import table_of
from worker.ledger.read import Batch
from worker.models import Account

MISSING_RATE = "missing_rate"
COUNTING_SUBSCRIPTION = frozenset({"active", "past_due", "unpaid"})


class LedgerRow(NamedTuple):
    """A ledger_line row in the table's column order (LEDGER_COLUMNS)."""

    account_id: int
    line_id: str
    invoice_id: str
    customer_id: str
    klass: str
    reason: str
    counted: bool
    excluded_reason: str | None
    period_start: int
    period_end: int
    currency: str
    net_amount: int
    monthly_amount: int
    monthly_reporting: int | None
    amount_reporting: int | None
    product_id: str | None
    price_id: str | None
    usage_type: str | None
    subscription_id: str | None
    subscription_item_id: str | None
    invoice_status: str | None
    invoiced_at: int | None
    mrr_end: int
    quantity: int | None  # the stored line's (the upcoming-period check compares them with the items')
    discount_total: int


LEDGER_COLUMNS = LedgerRow._fields
if tuple(table_of(ClassifiedLine).c.keys()) != LEDGER_COLUMNS:  # write.py inserts rows in this order
    raise RuntimeError("LedgerRow must list ledger_line's columns in the table's order")


@dataclass
class BuildCounts:
    """What a rebuild built, for the terminal and the nightly run log."""

    lines: int = 0
    by_class: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    excluded: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    upcoming: int = 0
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

    `currency` is lower case; `net` is the amount after discounts, without inclusive tax. `quantity` and
    `discount` are the stored line's (None and 0 on an upcoming line).
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
    discount: int


# LineFacts(...) / LedgerRow(...) run a Python-level __new__ with many arguments; tuple.__new__ builds the
# same NamedTuple in C, which keeps the per-line cost of the rebuild where it was before rows had names.
_new_tuple = tuple.__new__


class Builder:
    """Turns lines into ledger rows for one account (monthly and reporting amounts, counts by class)."""

    def __init__(self, account: Account, rates: RateTable, result: BuildCounts) -> None:
        self.account_name = account.name
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
        self.result.problems.append(f"account {self.account_name}: {message}")

    def line(
        self, facts: LineFacts, klass: str, reason: str, excluded: str | None, mrr_end: int
    ) -> LedgerRow:
        """One ledger row."""
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
            discount,
        ) = facts  # one step, where 18 attribute reads per line would cost more than the rest of this method
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
        return _new_tuple(
            LedgerRow,
            (
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
                discount,
            ),
        )


# -- stored lines -------------------------------------------------------------------------------------
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
            discount_total or 0,
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
    builder: Builder, lines: Iterable[billing.StoredLine], ended: dict[str, int], gone: dict[str, int]
) -> list[LedgerRow]:
    """Every stored line as a ledger row; a line with no customer or currency is left out as a problem.
    `ended` is when each ended (or deleted) subscription ended, `gone` when each customer deleted in Stripe
    was found so: their lines bring no MRR after that."""
    rows: list[LedgerRow] = []
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


# -- upcoming lines -------------------------------------------------------------------------------------
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
    builder: Builder, subs: dict[str, _Sub], items: Iterable[billing.PricedItem], rows: list[LedgerRow]
) -> list[LedgerRow]:
    """Lines for the current period not invoiced yet (docs/mrr.md) and plan changes within it; the invoiced
    lines a plan change replaced are cut short in `rows` (their mrr_end moves to the change).

    Licensed items count at the subscription's current items from the change (the latest proration in the
    period, else the period start); invoiced licensed lines of that period stop there. Metered items with no
    line for the current period carry the last billed period's amount forward. Only active / past_due / unpaid
    subscriptions.
    """
    by_sub: dict[str, list[int]] = defaultdict(list)  # positions in `rows`, so a cut line can be replaced
    for n, r in enumerate(rows):
        # prorations tell when a plan changed even on a draft invoice; recurring lines only when they count
        if r.subscription_id and (r.klass == PRORATION or (r.counted and r.klass == RECURRING)):
            by_sub[r.subscription_id].append(n)
    items_by_sub: dict[str, list[billing.PricedItem]] = defaultdict(list)
    for item in items:
        items_by_sub[item.subscription_id].append(item)
    out: list[LedgerRow] = []
    for sub_id, sub_items in items_by_sub.items():
        sub = subs.get(sub_id)
        if sub is None or sub.status not in COUNTING_SUBSCRIPTION:
            continue
        out.extend(_upcoming_for(builder, sub, sub_items, rows, by_sub.get(sub_id, [])))
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
    builder: Builder, sub: _Sub, items: list[billing.PricedItem], rows: list[LedgerRow], mine: list[int]
) -> list[LedgerRow]:
    """The upcoming rows of one subscription; `mine` are the positions of its lines in `rows`."""
    out: list[LedgerRow] = []
    licensed = [i for i in items if i.usage_type != "metered"]
    period = _current_period(sub, items)
    if period is None:
        return out
    start, end = period
    lines = [rows[n] for n in mine]
    recurring = [r for r in lines if r.klass == RECURRING]
    covering = [
        n
        for n in mine
        if rows[n].klass == RECURRING
        and rows[n].usage_type != "metered"
        and rows[n].period_start <= start < rows[n].mrr_end
    ]
    # None -> "" / 0 so that sorting never compares None with a value
    invoiced = sorted((rows[n].price_id or "", rows[n].quantity or 0) for n in covering)
    current = sorted((i.price_id or "", i.quantity or 0) for i in licensed)
    if licensed and invoiced != current:
        changes = [r.period_start for r in lines if r.klass == PRORATION and start <= r.period_start < end]
        change_at = max(changes, default=start)
        for n in covering:
            r = rows[n]
            rows[n] = r._replace(mrr_end=max(r.period_start, min(r.mrr_end, change_at)))
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
    out.extend(_carried_forward(builder, sub, items, recurring, start, end))
    return out


def _carried_forward(
    builder: Builder,
    sub: _Sub,
    items: list[billing.PricedItem],
    recurring: list[LedgerRow],
    start: int,
    end: int,
) -> list[LedgerRow]:
    """Metered items with no line for the current period: the last billed period's amount, carried forward."""
    out: list[LedgerRow] = []
    for i in items:
        if i.usage_type != "metered":
            continue
        billed = [
            r
            for r in recurring
            if r.usage_type == "metered"
            and (r.subscription_item_id == i.id or (i.price_id is not None and r.price_id == i.price_id))
        ]
        if any(r.period_start <= start < r.mrr_end for r in billed) or not billed:
            continue
        last = max(billed, key=lambda r: r.period_start)
        out.append(
            _upcoming_row(
                builder,
                sub,
                i,
                last.net_amount,
                (start, end),
                f"metered usage carried forward from line {last.line_id}",
            )
        )
    return out


def _upcoming_row(
    builder: Builder, sub: _Sub, item: billing.PricedItem, amount: int, period: tuple[int, int], reason: str
) -> LedgerRow:
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
        None,  # no invoice line stored: no quantity or discounts of one
        0,
    )
    builder.result.upcoming += 1
    return builder.line(facts, RECURRING, reason, None, period[1])


def ledger_rows(builder: Builder, batch: Batch) -> list[LedgerRow]:
    """The ledger rows of a batch: every stored line, then the upcoming ones."""
    subs = _subscription_states(batch.subscriptions, batch.gone)
    ended = {sub_id: sub.ended_at for sub_id, sub in subs.items() if sub.ended_at is not None}
    rows = _classified(builder, batch.lines, ended, batch.gone)
    rows.extend(_upcoming(builder, subs, batch.items, rows))
    return rows
