"""At-risk signals, point in time, and the score that ranks at-risk accounts (docs/at-risk.md).

Pure functions over plain records: the worker loads a customer's stored history (ledger lines, invoices,
subscriptions, usage) into these dataclasses once, and `evaluate` then answers "was this customer at risk
at instant t" for any t, using only what was true at t: an invoice counts as unpaid until the moment Stripe
dated its payment, voiding or write-off (`status_transitions`), a cancellation counts from the moment it was
asked for (`canceled_at`), seats are the quantities invoiced. So `retention at-risk --as-of D` replays D
exactly, and the backtest (metrics/backtest.py) evaluates the same function at its points. State that Stripe
only reports as of now (a `past_due` status, cancel flags without `canceled_at`) is used only when
`current=True`.

One piece of evidence is one signal: a seat cut is `usage_decline`, never also `downgrade` (the downgrade test
prices today's items at the seats of the peak). Every change must be material: the thresholds (`Thresholds`)
are defaults the installation may change (RETENTION_RISK_* variables, README).

Score: `MRR at risk (major units) x (1 - prod(1 - w_s))` over the account's signals, w_s being the signal's
strength in [0, 1). Two signals weigh more than one, the score never exceeds the MRR at risk, and accounts are
ranked by it: money times the strength of the evidence.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from metrics.calendar import day_start, moment_ts, utc_day
from metrics.money import fmt, to_major

DAY = 86400
YEAR = 365 * DAY
RENEWAL_WEIGHT = 0.2
WEIGHTS = {
    "cancel_scheduled": 0.9,
    "payment_failed": 0.6,
    "past_due": 0.7,
    "renewal_soon": RENEWAL_WEIGHT,
}
SIGNAL_CODES = ("usage_decline", "payment_failed", "cancel_scheduled", "downgrade", "renewal_soon")


@dataclass(frozen=True)
class Thresholds:
    """When a change is material. Defaults from the definitions (docs/at-risk.md), never tuned to a sample."""

    usage_drop: float = 0.25  # last period at least this far below the mean of the three before
    seasonal_drop: float = 0.15  # the same period a year earlier this far below its own three before
    seat_drop: float = 0.10  # seats at t at least this far below their highest of the lookback
    downgrade_drop: float = 0.10  # licensed MRR at t at least this far below its highest of the lookback
    lookback_days: int = 90
    renewal_days: int = 30
    renewal_days_annual: int = 60


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class UsagePeriod:
    """Billed (or metered) usage of one item for one service period; Unix seconds."""

    start: int
    end: int
    quantity: float


@dataclass(frozen=True)
class UsageSeries:
    """The usage history of one metered item: billed usage lines, or Billing Meter event summaries."""

    key: str  # subscription item id (billed lines) or meter id (meter summaries)
    label: str  # product name for the detail text
    source: str  # "billed" | "meter"
    periods: tuple[UsagePeriod, ...]  # sorted by end


@dataclass(frozen=True)
class LicensedLine:
    """A recurring, licensed (non-metered) line: what the customer paid a month for one item."""

    item_key: str  # subscription item id, else price id
    label: str  # product name
    price_id: str | None
    period_start: int
    period_end: int
    quantity: int | None
    monthly: int  # monthly amount in minor units of `currency`, net of discounts and inclusive tax
    currency: str
    discount: int = 0  # discount on the line, minor units
    interval: str | None = None  # month | year | week | day
    known_at: int | None = None  # when the invoice carrying it was created (None: from its period start)

    @property
    def known(self) -> int:
        return self.period_start if self.known_at is None else self.known_at


@dataclass(frozen=True)
class RevenueLine:
    """A counted recurring ledger line as MRR sees it: [start, end) and its monthly amount (reporting)."""

    start: int
    end: int
    monthly: int


@dataclass(frozen=True)
class SubscriptionState:
    id: str
    status: str
    created: int | None = None
    current_period_end: int | None = None
    cancel_at_period_end: bool = False
    cancel_at: int | None = None
    canceled_at: int | None = None
    ended_at: int | None = None
    interval: str | None = None  # the interval of its largest item (year -> 60-day renewal window)


@dataclass(frozen=True)
class InvoiceState:
    id: str
    status: str
    created: int
    attempt_count: int
    amount_due: int
    currency: str
    resolved_at: int | None = None  # paid_at / voided_at / marked_uncollectible_at (status_transitions)
    finalized_at: int | None = None  # payment is first attempted at (after) finalization


@dataclass(frozen=True)
class CustomerRecords:
    """Everything the signals look at for one customer, over its whole stored history.

    `mrr` is MRR at the as-of instant the records were loaded for; `revenue` lets MRR be taken at any other
    instant (the backtest's points and outcomes).
    """

    customer_id: str
    name: str
    mrr: int
    currency: str  # reporting currency
    subscriptions: tuple[SubscriptionState, ...] = ()
    invoices: tuple[InvoiceState, ...] = ()
    usage: tuple[UsageSeries, ...] = ()
    licensed: tuple[LicensedLine, ...] = ()
    revenue: tuple[RevenueLine, ...] = ()


@dataclass(frozen=True)
class Signal:
    code: str
    detail: str
    weight: float


@dataclass(frozen=True)
class RiskAssessment:
    customer_id: str
    name: str
    mrr: int
    currency: str
    signals: tuple[Signal, ...]
    renewal_date: date | None
    score: float = field(default=0.0)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(s.code for s in self.signals)


@dataclass(frozen=True)
class TrackRecord:
    """How often a signal was followed by churn or contraction in the account's backtest (docs/at-risk.md)."""

    flags: int
    hits: int


@dataclass(frozen=True)
class AtRiskAccount:
    """An assessment with the link to the customer in the Stripe dashboard and each signal's track record.

    The risk result every reader shares (the CLI, its JSON, the Slack digest, the report): a plain record, so
    the rules and the worker need nothing from the integration that happens to show it.
    """

    assessment: RiskAssessment
    dashboard_url: str
    track: dict[str, TrackRecord] = field(default_factory=dict)  # signal code -> record (5+ past cases)

    @property
    def customer_id(self) -> str:
        return self.assessment.customer_id


@dataclass(frozen=True)
class RecoveredAccount:
    """A customer reported at risk before who still pays and shows no signal any more."""

    customer_id: str
    name: str
    dashboard_url: str


def _qty(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def mrr_at(revenue: Iterable[RevenueLine], at: int) -> int:
    """MRR at an instant from counted recurring lines: start <= at < end, summed, never below 0."""
    return max(0, sum(line.monthly for line in revenue if line.start <= at < line.end))


# -- usage_decline: metered usage ------------------------------------------------------------------
def _mean(periods: Sequence[UsagePeriod]) -> float:
    return sum(p.quantity for p in periods) / len(periods)


def _year_before(done: Sequence[UsagePeriod], last: UsagePeriod) -> int | None:
    """Index in `done` of the period that started about a year before `last` (within half a period)."""
    target, slack = last.start - YEAR, max((last.end - last.start) // 2, DAY)
    for i, p in enumerate(done):
        if abs(p.start - target) <= slack:
            return i
    return None


def seasonal(done: Sequence[UsagePeriod], last: UsagePeriod, th: Thresholds) -> bool:
    """Whether the same period a year earlier was itself a dip of `seasonal_drop` below the (up to three)
    periods before it: a customer whose usage falls every December is not at risk every January."""
    i = _year_before(done, last)
    if i is None or i == 0:
        return False
    before = done[max(0, i - 3) : i]
    mean = _mean(before)
    return mean > 0 and done[i].quantity <= (1 - th.seasonal_drop) * mean


def usage_drop(series: UsageSeries, at: int, th: Thresholds = DEFAULT_THRESHOLDS) -> Signal | None:
    """The last full period (ended by `at`) `usage_drop` below the mean of the three periods before it.

    A series whose last period ended long ago (the item was removed) says nothing about today; fewer than four
    periods say nothing at all.
    """
    done = [p for p in series.periods if p.end <= at]
    if len(done) < 4:
        return None
    last, before = done[-1], done[-4:-1]
    if at - last.end > 1.5 * max(last.end - last.start, DAY):
        return None
    mean = _mean(before)
    if mean <= 0 or last.quantity > (1 - th.usage_drop) * mean or seasonal(done, last, th):
        return None
    drop = 1 - last.quantity / mean
    where = "billed usage" if series.source == "billed" else "metered usage"
    detail = (
        f"{series.label}: {where} {_qty(last.quantity)} in the period to {utc_day(last.end)} vs "
        f"{_qty(mean)} average of the 3 periods before ({drop:.0%} lower)"
    )
    return Signal("usage_decline", detail, min(0.8, 0.3 + 0.5 * drop))


# -- usage_decline: seats ---------------------------------------------------------------------------
def _known(licensed: Iterable[LicensedLine], at: int) -> list[LicensedLine]:
    """Lines invoiced by `at` with a positive amount (a proration credit repeats the old quantity)."""
    return [line for line in licensed if line.known <= at and line.monthly >= 0]


def _covering(lines: Iterable[LicensedLine], at: int) -> dict[str, LicensedLine]:
    """Per item, the newest line whose service period covers `at`."""
    chosen: dict[str, LicensedLine] = {}
    for line in lines:
        if line.period_start <= at < line.period_end:
            held = chosen.get(line.item_key)
            if held is None or (line.period_start, line.known) > (held.period_start, held.known):
                chosen[line.item_key] = line
    return chosen


def _seat_peak(lines: Iterable[LicensedLine], key: str, price: str | None, since: int, at: int) -> int:
    """The highest quantity of one item under one price over lines overlapping [since, at]."""
    return max(
        (
            line.quantity or 0
            for line in lines
            if line.item_key == key
            and line.price_id == price
            and line.period_start <= at
            and line.period_end > since
        ),
        default=0,
    )


def seat_drop(
    licensed: Sequence[LicensedLine], at: int, th: Thresholds = DEFAULT_THRESHOLDS
) -> Signal | None:
    """A licensed item's seats at `at` at least `seat_drop` below their highest of the lookback days."""
    lines = _known(licensed, at)
    since = at - th.lookback_days * DAY
    falls: list[tuple[str, int, int]] = []
    for key, now in sorted(_covering(lines, at).items()):
        if not now.quantity:
            continue
        peak = _seat_peak(lines, key, now.price_id, since, at)
        if peak and now.quantity <= (1 - th.seat_drop) * peak:
            falls.append((now.label, peak, now.quantity))
    if not falls:
        return None
    parts = [
        f"{label}: seats {old} -> {new} (highest of {th.lookback_days} days)" for label, old, new in falls
    ]
    worst = max(1 - new / old for _, old, new in falls)
    return Signal("usage_decline", "; ".join(parts), min(0.8, 0.3 + 0.5 * worst))


def usage_decline(
    usage: Sequence[UsageSeries],
    licensed: Sequence[LicensedLine],
    at: int,
    th: Thresholds = DEFAULT_THRESHOLDS,
) -> Signal | None:
    found = [s for s in (usage_drop(series, at, th) for series in usage) if s is not None]
    seats = seat_drop(licensed, at, th)
    if seats is not None:
        found.append(seats)
    if not found:
        return None
    return Signal("usage_decline", "; ".join(s.detail for s in found), max(s.weight for s in found))


# -- payment_failed --------------------------------------------------------------------------------
def _alive(sub: SubscriptionState, at: int) -> bool:
    started = sub.created is None or sub.created <= at
    return (
        started
        and (sub.ended_at is None or sub.ended_at > at)
        and (sub.status != "canceled" or sub.ended_at is not None)
    )


def unpaid_failed(inv: InvoiceState, at: int, current: bool) -> bool:
    """Whether, at `at`, the invoice had a failed attempt and was still unpaid, not voided nor written off.

    A failed attempt can only come after the invoice was finalized (created, when Stripe sent no date): at
    that very instant no payment has been tried yet. Open today with an attempt: failed ever since. Paid,
    voided or written off: unpaid until the dated transition, and failed only if more than one attempt was
    made (a paid invoice's count includes the success); without a date the past cannot be told.
    """
    if inv.amount_due <= 0 or inv.attempt_count <= 0:
        return False
    if current and inv.status == "open":
        return inv.created <= at
    if at <= (inv.finalized_at or inv.created):
        return False
    if inv.status == "open":
        return True
    if current or inv.resolved_at is None or inv.resolved_at <= at:
        return False
    return inv.status != "paid" or inv.attempt_count > 1


def payment_failed(
    subs: Sequence[SubscriptionState], invoices: Sequence[InvoiceState], at: int, current: bool
) -> Signal | None:
    """An unpaid invoice with a failed attempt at `at`, or (now only) a `past_due` subscription."""
    failed = [inv for inv in invoices if unpaid_failed(inv, at, current)]
    past_due = [s for s in subs if current and s.status == "past_due" and _alive(s, at)]
    if not failed and not past_due:
        return None
    parts = [
        f"invoice {inv.id} for {fmt(inv.amount_due, inv.currency)} unpaid after {inv.attempt_count} "
        f"attempt{'s' if inv.attempt_count != 1 else ''} (since {utc_day(inv.created)})"
        for inv in failed
    ]
    parts += [f"subscription {s.id} is past_due" for s in past_due]
    weight = WEIGHTS["past_due"] if past_due else WEIGHTS["payment_failed"]
    return Signal("payment_failed", "; ".join(parts), weight)


# -- cancel_scheduled ------------------------------------------------------------------------------
def _scheduled_end(sub: SubscriptionState) -> int | None:
    return sub.cancel_at or sub.ended_at or sub.current_period_end


def cancel_scheduled(subs: Sequence[SubscriptionState], at: int, current: bool) -> Signal | None:
    """A cancellation asked for by `at` (`canceled_at`) on a subscription still running at `at`.

    A subscription that ended after its `canceled_at` was scheduled to end from that moment; flags without
    `canceled_at` are only known to hold now. A cancellation asked for after `at` is invisible at `at`.
    """
    parts = []
    for sub in subs:
        if not _alive(sub, at):
            continue
        ended_later = (
            sub.ended_at is not None and sub.canceled_at is not None and sub.canceled_at < sub.ended_at
        )
        if not (sub.cancel_at_period_end or sub.cancel_at is not None or ended_later):
            continue
        if sub.canceled_at is not None and sub.canceled_at > at:
            continue
        if sub.canceled_at is None and not current:
            continue
        end = _scheduled_end(sub)
        if end is not None and end <= at:
            continue
        when = f" on {utc_day(end)}" if end else ""
        how = "by cancel_at" if sub.cancel_at and not sub.cancel_at_period_end else "at period end"
        parts.append(f"subscription {sub.id} cancels {how}{when}")
    if not parts:
        return None
    return Signal("cancel_scheduled", "; ".join(parts), WEIGHTS["cancel_scheduled"])


# -- downgrade -------------------------------------------------------------------------------------
def licensed_mrr(licensed: Sequence[LicensedLine], at: int) -> dict[str, int]:
    """Licensed MRR per currency at `at` (newest covering line per item, as invoiced by `at`)."""
    totals: dict[str, int] = defaultdict(int)
    for line in _covering(_known(licensed, at), at).values():
        totals[line.currency] += line.monthly
    return dict(totals)


def _peak(lines: Sequence[LicensedLine], since: int, at: int, currency: str) -> tuple[int, int]:
    """(highest licensed MRR in `currency` over [since, at], the instant it held)."""
    instants = sorted({since} | {line.period_start for line in lines if since < line.period_start <= at})
    best, when = 0, since
    for instant in instants:
        total = sum(line.monthly for line in _covering(lines, instant).values() if line.currency == currency)
        if total > best:
            best, when = total, instant
    return best, when


def _at_peak_seats(now: dict[str, LicensedLine], then: dict[str, LicensedLine], currency: str) -> int:
    """Today's licensed MRR priced at the seats of the peak: a fall left after this is not about seats."""
    total = 0
    for key, line in now.items():
        if line.currency != currency:
            continue
        was = then.get(key)
        if was is not None and was.price_id == line.price_id and was.quantity and line.quantity:
            total += line.monthly * was.quantity // line.quantity
        else:
            total += line.monthly
    return total


def _reasons(now: dict[str, LicensedLine], then: dict[str, LicensedLine], currency: str) -> list[str]:
    how = []
    for key, was in sorted(then.items()):
        if was.currency != currency:
            continue
        is_ = now.get(key)
        if is_ is None:
            how.append(f"{was.label} removed")
            continue
        if is_.price_id != was.price_id and is_.monthly < was.monthly:
            how.append(f"cheaper plan {was.label} -> {is_.label}")
        if is_.discount > was.discount:
            how.append(f"new discount {fmt(is_.discount, currency)}")
    return how


def downgrade(
    licensed: Sequence[LicensedLine], at: int, th: Thresholds = DEFAULT_THRESHOLDS
) -> Signal | None:
    """Licensed MRR at `at` at least `downgrade_drop` below its highest of the lookback days, for a reason
    other than fewer seats (a cheaper plan, a lower price, a new discount, an item removed).

    Compared per currency in the line's own currency, so a moving exchange rate is never a downgrade.
    """
    lines = _known(licensed, at)
    since = at - th.lookback_days * DAY
    now_items = _covering(lines, at)
    parts, worst = [], 0.0
    currencies = sorted(
        {line.currency for line in lines if line.period_end > since and line.period_start <= at}
    )
    for currency in currencies:
        peak, when = _peak(lines, since, at, currency)
        then_items = _covering(lines, when)
        new = _at_peak_seats(now_items, then_items, currency)
        if peak <= 0 or new > (1 - th.downgrade_drop) * peak:
            continue
        worst = max(worst, 1 - new / peak)
        actual = sum(line.monthly for line in now_items.values() if line.currency == currency)
        how = _reasons(now_items, then_items, currency)
        reason = f" ({'; '.join(how)})" if how else ""
        parts.append(
            f"licensed MRR {fmt(peak, currency)} -> {fmt(actual, currency)} since {utc_day(when)}{reason}"
        )
    if not parts:
        return None
    return Signal("downgrade", "; ".join(parts), min(0.8, 0.3 + 0.5 * worst))


# -- renewal_soon ----------------------------------------------------------------------------------
def renewal_date(
    subs: Sequence[SubscriptionState], licensed: Sequence[LicensedLine], at: int, current: bool
) -> tuple[date | None, bool]:
    """The next end of a current period (and whether it belongs to an annual plan)."""
    ends: list[tuple[int, bool]] = []
    if current:
        ends += [
            (s.current_period_end, s.interval == "year")
            for s in subs
            if _alive(s, at) and s.current_period_end is not None and s.current_period_end > at
        ]
    if not ends:
        ends += [
            (line.period_end, line.interval == "year")
            for line in _covering(_known(licensed, at), at).values()
        ]
    if not ends:
        return None, False
    end, annual = min(ends)
    return utc_day(end), annual


def renewal_soon(
    renewal: date | None, annual: bool, at: int, th: Thresholds = DEFAULT_THRESHOLDS
) -> Signal | None:
    if renewal is None:
        return None
    days = (renewal - utc_day(at)).days
    window = th.renewal_days_annual if annual else th.renewal_days
    if not 0 <= days <= window:
        return None
    return Signal("renewal_soon", renewal_detail(renewal, annual, at), WEIGHTS["renewal_soon"])


RENEWS, RENEWS_ANNUAL = "renews on ", "annual plan renews on "


def renewal_detail(renewal: date, annual: bool, at: int) -> str:
    """renewal_soon's text at `at`: the days left to the renewal follow the calendar day."""
    return f"{RENEWS_ANNUAL if annual else RENEWS}{renewal} (in {(renewal - utc_day(at)).days} days)"


def redated(assessment: RiskAssessment, at: int) -> RiskAssessment:
    """An assessment judged earlier as `evaluate` gives it at a later `at` before its `next_change` (the
    signals, weights, renewal date, MRR and score still the same), when none of its signals is a downgrade:
    then only renewal_soon's days left follow the calendar day, and they are counted again here. (A downgrade
    may name the lookback's first day as its peak's, which moves each day: such a verdict is not kept past
    its day, worker/risk.py.)"""
    renewal = assessment.renewal_date
    if renewal is None or "renewal_soon" not in assessment.codes:
        return assessment
    signals = tuple(
        replace(s, detail=renewal_detail(renewal, s.detail.startswith(RENEWS_ANNUAL), at))
        if s.code == "renewal_soon"
        else s
        for s in assessment.signals
    )
    return replace(assessment, signals=signals)


# -- the account -----------------------------------------------------------------------------------
def score(mrr: int, currency: str, signals: Sequence[Signal]) -> float:
    """MRR at risk (major units) x (1 - prod(1 - weight)): money times the strength of the evidence."""
    keep = 1.0
    for signal in signals:
        keep *= 1 - signal.weight
    return round(float(to_major(mrr, currency)) * (1 - keep), 2)


def signals_at(
    records: CustomerRecords, at: int, current: bool, th: Thresholds = DEFAULT_THRESHOLDS
) -> tuple[list[Signal], date | None]:
    """The customer's signals at instant `at` (renewal_soon only beside another) and its renewal date."""
    found = [
        usage_decline(records.usage, records.licensed, at, th),
        payment_failed(records.subscriptions, records.invoices, at, current),
        cancel_scheduled(records.subscriptions, at, current),
        downgrade(records.licensed, at, th),
    ]
    signals = [s for s in found if s is not None]
    renewal, annual = renewal_date(records.subscriptions, records.licensed, at, current)
    if signals:
        soon = renewal_soon(renewal, annual, at, th)
        if soon is not None:
            signals.append(soon)
    return signals, renewal


def evaluate(
    records: CustomerRecords, at: int, mrr: int, current: bool, th: Thresholds = DEFAULT_THRESHOLDS
) -> RiskAssessment | None:
    """One customer at instant `at` with MRR `mrr` there: its assessment, or None (not paying, no signal).

    The one function every reader of risk calls: `at-risk`, the alerts, the backtest's points, the watch.
    """
    if mrr <= 0:
        return None
    signals, renewal = signals_at(records, at, current, th)
    if not signals:
        return None
    return RiskAssessment(
        records.customer_id,
        records.name,
        mrr,
        records.currency,
        tuple(signals),
        renewal,
        score(mrr, records.currency, signals),
    )


def assess(
    records: CustomerRecords, as_of: datetime, current: bool = True, th: Thresholds = DEFAULT_THRESHOLDS
) -> RiskAssessment | None:
    """`evaluate` at `as_of` with the MRR the records were loaded with."""
    return evaluate(records, moment_ts(as_of), records.mrr, current, th)


def rank(assessments: Iterable[RiskAssessment | None]) -> list[RiskAssessment]:
    """At-risk accounts, highest score first (ties: larger MRR, then customer id for a stable order)."""
    found = [a for a in assessments if a is not None]
    return sorted(found, key=lambda a: (-a.score, -a.mrr, a.customer_id))


def first_signal_day(
    records: CustomerRecords, end: date, lookback_days: int = 365, th: Thresholds = DEFAULT_THRESHOLDS
) -> date | None:
    """Walking back day by day from `end`: the first day of the latest run of days with a signal.

    Historical evaluation (current=False): only dated evidence counts. `records.mrr` must be positive.
    """
    first: date | None = None
    day = end
    for _ in range(lookback_days):
        moment = day_start(day)
        if assess(records, moment, current=False, th=th) is None:
            if first is not None:
                break
        else:
            first = day
        day -= timedelta(days=1)
    return first


# -- how long a verdict holds ----------------------------------------------------------------------
def _usage_turns(series: UsageSeries) -> Iterator[int]:
    for p in series.periods:
        yield p.end
        yield math.floor(p.end + 1.5 * max(p.end - p.start, DAY)) + 1


def _turning_points(
    records: CustomerRecords, th: Thresholds, money: bool, signals: bool, after: int, renewals: bool = True
) -> Iterator[int]:
    """Every instant at which one of the rules' comparisons with the instant `at` can turn, the records
    unchanged. Each comparison above is of the form `x <= at`, `at < x` or `at > x`; this lists its x (or
    x + 1 for `at <= x` and `at > x`), with the lookback's `since = at - lookback` moved onto `at`. Evidence
    that can never give a signal (a paid invoice with one attempt, a subscription never cancelled nor past
    due) is left out; so are the renewal's dates without a signal (renewal_soon only goes beside one), and
    those of a period that ended a day or more before `after` (all of its dates are past then: most lines)."""
    lookback = th.lookback_days * DAY
    for series in records.usage:  # a period ends (p.end <= at); the last one grows stale (at - end > 1.5 x)
        yield from _usage_turns(series)
    for line in records.licensed:  # known, covering at / at since, overlapping the lookback, a peak instant
        yield line.known
        for edge in (line.period_start, line.period_end):
            yield edge
            yield edge + lookback
    yield from _invoice_turns(records.invoices)
    for sub in records.subscriptions:
        if signals or _may_signal(sub):  # alive, cancellation asked, scheduled end, current period (renewal)
            moments = (sub.created, sub.ended_at, sub.canceled_at, sub.cancel_at, sub.current_period_end)
            yield from (m for m in moments if m is not None)
    for rev in records.revenue if money else ():  # MRR at `at` (whether the customer pays, its score)
        yield rev.start
        yield rev.end
    if signals and renewals:  # a renewal on that day enters renewal_soon's window, or has passed
        ends = [s.current_period_end for s in records.subscriptions] + [
            x.period_end for x in records.licensed
        ]
        for end in ends:
            if end is not None and end + DAY > after:  # its latest date is the day start after its end
                yield from _renewal_turns(utc_day(end), th)


def _may_signal(sub: SubscriptionState) -> bool:
    """Whether the subscription can ever give payment_failed (past_due) or cancel_scheduled."""
    ended_later = sub.ended_at is not None and sub.canceled_at is not None and sub.canceled_at < sub.ended_at
    return sub.status == "past_due" or sub.cancel_at_period_end or sub.cancel_at is not None or ended_later


def _invoice_turns(invoices: Iterable[InvoiceState]) -> Iterator[int]:
    """Created, first attempt possible after finalization, resolved: of invoices that can count as failed."""
    for inv in invoices:
        if inv.amount_due <= 0 or inv.attempt_count <= 0 or (inv.status == "paid" and inv.attempt_count <= 1):
            continue  # unpaid_failed is False at every instant
        yield inv.created
        yield (inv.finalized_at or inv.created) + 1
        if inv.resolved_at is not None:
            yield inv.resolved_at


def _renewal_turns(renewal: date, th: Thresholds) -> Iterator[int]:
    for window in (th.renewal_days, th.renewal_days_annual):
        yield moment_ts(day_start(renewal - timedelta(days=window)))
    yield moment_ts(day_start(renewal + timedelta(days=1)))


def change_points(records: CustomerRecords, th: Thresholds, money: bool, signals: bool) -> list[int]:
    """Every turning point `next_change` may answer with, whatever the instant, sorted and distinct: the
    first of them after `at` is `next_change(records, at, th, money, signals)`. For a caller that asks at many
    instants of one customer (the backtest's spans): listed once, each answer is a bisection, where
    `next_change` lists them again at each instant."""
    return sorted(set(_turning_points(records, th, money, signals, after=-(2**62))))  # no period is past


def next_after(points: Sequence[int], at: int) -> int | None:
    """The first of these sorted instants after `at` (None: none is)."""
    k = bisect_right(points, at)
    return points[k] if k < len(points) else None


def next_change(
    records: CustomerRecords,
    at: int,
    th: Thresholds = DEFAULT_THRESHOLDS,
    money: bool = True,
    signals: bool = True,
    before: int | None = None,
) -> int | None:
    """The earliest instant after `at` at which `evaluate` may answer differently for these records (None:
    never). Over [at, next_change) every signal code, weight, renewal date and MRR is the same as at `at`.

    `signals`: whether the customer has a signal at `at` (False leaves the renewal's dates out: they matter
    only beside a signal, and the first signal to appear does so at a date listed here). Two texts still move
    with the calendar day: `renewal_soon` counts the days left and `downgrade` may name `at` minus the
    lookback as the day of its peak; a caller that keeps the details of a flagged customer must also stop at
    the next day start (worker/risk.py does). Without `money`, the MRR's changes are left out: the signals
    (`signals_at`) alone hold until then, as the backtest needs them.

    `before`: only an instant before it is asked for (None when there is none), as by a caller that stops at
    the next day start anyway. The renewal's dates are all day starts, so when `before` is no later than the
    next day start after `at` they cannot be before it and are not computed (they are most of the work for a
    customer at risk with a long history).
    """
    if before is None:
        return min((x for x in _turning_points(records, th, money, signals, at) if x > at), default=None)
    renewals = before > moment_ts(day_start(utc_day(at) + timedelta(days=1)))
    points = _turning_points(records, th, money, signals, at, renewals)
    return min((x for x in points if at < x < before), default=None)
