"""At-risk signals and the score that orders at-risk accounts (docs/at-risk.md).

Pure functions over plain records: the worker loads stored Stripe rows and ledger lines into these
dataclasses, so the same functions answer "who is at risk today" and, for the churn post-mortem, "when did
this customer first look at risk" by being evaluated at earlier dates. Every rule therefore only uses evidence
dated at or before `as_of`; state that Stripe only reports as of now (a `past_due` status, cancel flags
without a `canceled_at`) is used only when `current=True`.

Score (documented in docs/at-risk.md): `score = MRR at risk (major units) x (1 - prod(1 - w_s))` over the
account's signals, where w_s is the signal's weight (strength) in [0, 1). The product form treats signals as
independent pieces of evidence: two signals weigh more than one, but the score never exceeds the MRR at
risk, so a large account with a weak signal and a small account with a strong one are compared in money.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from metrics.calendar import day_start, moment_ts, utc_day
from metrics.money import fmt, to_major

DAY = 86400
LOOKBACK_DAYS = 90
USAGE_DROP = 0.25  # last full period at least 25% below the mean of the three before it
DOWNGRADE_MIN_FALL = 0.01  # ignore falls under 1% (rounding of inclusive tax, cents)
RENEWAL_DAYS = 30
RENEWAL_DAYS_ANNUAL = 60
# open/uncollectible invoices are failed payments from their creation; paid ones cannot be dated (see below)
FAILED_STATUSES = ("open", "uncollectible")

WEIGHTS = {
    "cancel_scheduled": 0.9,
    "payment_failed": 0.6,
    "past_due": 0.7,
    "renewal_soon": 0.2,
}


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
    periods: tuple[UsagePeriod, ...]


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
    resolved_at: int | None = None  # paid_at / voided_at from status_transitions when Stripe sent them


@dataclass(frozen=True)
class CustomerRecords:
    """Everything the signals look at for one customer; `mrr` is MRR at `as_of` in the reporting currency."""

    customer_id: str
    name: str
    mrr: int
    currency: str  # reporting currency
    subscriptions: tuple[SubscriptionState, ...] = ()
    invoices: tuple[InvoiceState, ...] = ()
    usage: tuple[UsageSeries, ...] = ()
    licensed: tuple[LicensedLine, ...] = ()


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
class AtRiskAccount:
    """An assessment with the link to the customer in the Stripe dashboard.

    The risk result every reader shares (the CLI, its JSON, the Slack digest): a plain record, so the rules
    and the worker need nothing from the integration that happens to show it.
    """

    assessment: RiskAssessment
    dashboard_url: str

    @property
    def customer_id(self) -> str:
        return self.assessment.customer_id


@dataclass(frozen=True)
class RecoveredAccount:
    """A customer reported at risk before who still pays and shows no signal any more.

    Only the identity and the link: nothing is at risk, so there is no assessment to carry.
    """

    customer_id: str
    name: str
    dashboard_url: str


def _qty(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


# -- usage_decline ---------------------------------------------------------------------------------
def usage_drop(series: UsageSeries, at: int) -> Signal | None:
    """The last full period (ended by `at`) at least 25% below the mean of the three periods before it.

    A series whose last period ended long ago (the item was removed) says nothing about today.
    """
    done = sorted((p for p in series.periods if p.end <= at), key=lambda p: p.end)
    if len(done) < 4:
        return None
    last, before = done[-1], done[-4:-1]
    if at - last.end > 1.5 * max(last.end - last.start, DAY):
        return None
    mean = sum(p.quantity for p in before) / 3
    if mean <= 0 or last.quantity > (1 - USAGE_DROP) * mean:
        return None
    drop = 1 - last.quantity / mean
    where = "billed usage" if series.source == "billed" else "metered usage"
    detail = (
        f"{series.label}: {where} {_qty(last.quantity)} in the period to {utc_day(last.end)} vs "
        f"{_qty(mean)} average of the 3 periods before ({drop:.0%} lower)"
    )
    return Signal("usage_decline", detail, min(0.8, 0.3 + 0.5 * drop))


def _covering(lines: Iterable[LicensedLine], at: int) -> dict[str, LicensedLine]:
    """Per item, the newest line whose service period covers `at`."""
    chosen: dict[str, LicensedLine] = {}
    for line in lines:
        if line.period_start <= at < line.period_end:
            held = chosen.get(line.item_key)
            if held is None or line.period_start > held.period_start:
                chosen[line.item_key] = line
    return chosen


def seat_drop(licensed: Sequence[LicensedLine], at: int) -> Signal | None:
    """A licensed item's quantity fell over the last 90 days (items present at both dates)."""
    now, then = _covering(licensed, at), _covering(licensed, at - LOOKBACK_DAYS * DAY)
    falls: list[tuple[str, int, int]] = []
    for key in sorted(now):
        if key not in then or then[key].price_id != now[key].price_id:
            continue  # a quantity under another price (per-seat -> flat plan) is a plan change, not seats
        old_q, new_q = then[key].quantity, now[key].quantity
        if old_q and new_q is not None and new_q < old_q:
            falls.append((now[key].label, old_q, new_q))
    if not falls:
        return None
    parts = [f"{label}: seats {old} -> {new} over {LOOKBACK_DAYS} days" for label, old, new in falls]
    worst = max(1 - new / old for _, old, new in falls)
    return Signal("usage_decline", "; ".join(parts), min(0.8, 0.3 + 0.5 * worst))


def usage_decline(usage: Sequence[UsageSeries], licensed: Sequence[LicensedLine], at: int) -> Signal | None:
    found = [s for s in (usage_drop(series, at) for series in usage) if s is not None]
    seats = seat_drop(licensed, at)
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


def payment_failed(
    subs: Sequence[SubscriptionState], invoices: Sequence[InvoiceState], at: int, current: bool
) -> Signal | None:
    """An open invoice with a failed attempt, or (now only) a `past_due` subscription.

    At an earlier date, an invoice that is open or uncollectible today was unpaid since it was created; a
    paid invoice's `attempt_count` also counts the successful attempt, so it is evidence only where Stripe
    dated the payment (status_transitions) and more than one attempt was made.
    """
    failed = []
    for inv in invoices:
        if inv.attempt_count <= 0 or inv.created > at:
            continue
        if current:
            if inv.status == "open":
                failed.append(inv)
            continue
        retried_later = inv.resolved_at is not None and inv.resolved_at > at and inv.attempt_count > 1
        if inv.status in FAILED_STATUSES or retried_later:
            failed.append(inv)
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
def cancel_scheduled(subs: Sequence[SubscriptionState], at: int, current: bool) -> Signal | None:
    """`cancel_at_period_end` or `cancel_at` set on a subscription still running at `at`.

    Stripe's `canceled_at` is when the cancellation was requested, so a subscription that ended after it was
    scheduled to end from `canceled_at` on; without `canceled_at` the flags are only known to hold now.
    """
    parts = []
    for sub in subs:
        if not _alive(sub, at):
            continue
        ended_later = (
            sub.ended_at is not None and sub.canceled_at is not None and sub.canceled_at < sub.ended_at
        )
        flagged = sub.cancel_at_period_end or sub.cancel_at is not None or ended_later
        if not flagged:
            continue
        if sub.canceled_at is not None:
            if sub.canceled_at > at:
                continue
        elif not current:
            continue
        end = sub.cancel_at or sub.ended_at or sub.current_period_end
        when = f" on {utc_day(end)}" if end else ""
        how = "at period end" if sub.cancel_at_period_end else "by cancel_at"
        parts.append(f"subscription {sub.id} cancels {how}{when}")
    if not parts:
        return None
    return Signal("cancel_scheduled", "; ".join(parts), WEIGHTS["cancel_scheduled"])


# -- downgrade -------------------------------------------------------------------------------------
def licensed_mrr(licensed: Sequence[LicensedLine], at: int) -> dict[str, int]:
    """Licensed MRR per currency at `at` (newest covering line per item)."""
    totals: dict[str, int] = defaultdict(int)
    for line in _covering(licensed, at).values():
        totals[line.currency] += line.monthly
    return dict(totals)


def downgrade(licensed: Sequence[LicensedLine], at: int) -> Signal | None:
    """Licensed (non-metered) MRR fell over the last 90 days; the detail says how (plan, seats, discount).

    Compared per currency in the line's own currency, so a moving exchange rate is never a downgrade.
    """
    before = at - LOOKBACK_DAYS * DAY
    now_items, then_items = _covering(licensed, at), _covering(licensed, before)
    now, then = licensed_mrr(licensed, at), licensed_mrr(licensed, before)
    parts, worst = [], 0.0
    for currency in sorted(then):
        old, new = then[currency], now.get(currency, 0)
        if old <= 0 or new >= old * (1 - DOWNGRADE_MIN_FALL):
            continue
        worst = max(worst, 1 - new / old)
        how = []
        for key, was in sorted(then_items.items()):
            if was.currency != currency:
                continue
            is_ = now_items.get(key)
            if is_ is None:
                how.append(f"{was.label} removed")
                continue
            same_price = is_.price_id == was.price_id
            if not same_price and is_.monthly < was.monthly:
                how.append(f"cheaper plan {was.label} -> {is_.label}")
            if same_price and was.quantity and is_.quantity is not None and is_.quantity < was.quantity:
                how.append(f"fewer seats {was.quantity} -> {is_.quantity}")
            if is_.discount > was.discount:
                how.append(f"new discount {fmt(is_.discount, currency)}")
        reason = f" ({'; '.join(how)})" if how else ""
        parts.append(
            f"licensed MRR {fmt(old, currency)} -> {fmt(new, currency)} since {utc_day(before)}{reason}"
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
        ends += [(line.period_end, line.interval == "year") for line in _covering(licensed, at).values()]
    if not ends:
        return None, False
    end, annual = min(ends)
    return utc_day(end), annual


def renewal_soon(renewal: date | None, annual: bool, at: int) -> Signal | None:
    if renewal is None:
        return None
    days = (renewal - utc_day(at)).days
    window = RENEWAL_DAYS_ANNUAL if annual else RENEWAL_DAYS
    if not 0 <= days <= window:
        return None
    plan = "annual plan renews" if annual else "renews"
    return Signal("renewal_soon", f"{plan} on {renewal} (in {days} days)", WEIGHTS["renewal_soon"])


# -- the account -----------------------------------------------------------------------------------
def score(mrr: int, currency: str, signals: Sequence[Signal]) -> float:
    """MRR at risk (major units) x (1 - prod(1 - weight)): money first, then the strength of the evidence."""
    keep = 1.0
    for signal in signals:
        keep *= 1 - signal.weight
    return round(float(to_major(mrr, currency)) * (1 - keep), 2)


def assess(records: CustomerRecords, as_of: datetime, current: bool = True) -> RiskAssessment | None:
    """The customer's signals at `as_of`, or None when not paying or no signal holds.

    `renewal_soon` alone is not a risk: it is reported only together with another signal.
    """
    if records.mrr <= 0:
        return None
    at = moment_ts(as_of)
    found = [
        usage_decline(records.usage, records.licensed, at),
        payment_failed(records.subscriptions, records.invoices, at, current),
        cancel_scheduled(records.subscriptions, at, current),
        downgrade(records.licensed, at),
    ]
    signals = [s for s in found if s is not None]
    renewal, annual = renewal_date(records.subscriptions, records.licensed, at, current)
    if not signals:
        return None
    soon = renewal_soon(renewal, annual, at)
    if soon is not None:
        signals.append(soon)
    return RiskAssessment(
        records.customer_id,
        records.name,
        records.mrr,
        records.currency,
        tuple(signals),
        renewal,
        score(records.mrr, records.currency, signals),
    )


def rank(assessments: Iterable[RiskAssessment | None]) -> list[RiskAssessment]:
    """At-risk accounts, highest score first (ties: larger MRR, then customer id for a stable order)."""
    found = [a for a in assessments if a is not None]
    return sorted(found, key=lambda a: (-a.score, -a.mrr, a.customer_id))


def first_signal_day(records: CustomerRecords, end: date, lookback_days: int = 365) -> date | None:
    """Walking back day by day from `end`: the first day of the latest run of days with a signal.

    Historical evaluation (current=False): only dated evidence counts. `records.mrr` must be positive.
    """
    first: date | None = None
    day = end
    for _ in range(lookback_days):
        moment = day_start(day)
        if assess(records, moment, current=False) is None:
            if first is not None:
                break
        else:
            first = day
        day -= timedelta(days=1)
    return first
