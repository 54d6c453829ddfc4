"""The backtest: how good the at-risk alerts have been on an account's own history (docs/at-risk.md).

Points t_k = as-of minus k calendar months, k = 4..15, at 00:00 UTC. At each point the customers flagged are
exactly those `metrics.at_risk.evaluate` flags there (the function `retention at-risk --as-of` runs), so the
backtest measures what a replay of the command at its points would show. It is computed in one pass: each
customer's history is read once and judged at all twelve points, and its MRR over time (a step function of
its counted recurring lines) gives the outcomes:

- a flag (t, c) is a hit when within 120 days after t, c's MRR reaches 0 or falls to 90% or less of MRR(c, t);
- a churner's MRR fell from > 0 to 0 at d, t_15 + 28 days <= d <= t_4 + 120 days; it is caught when flagged
  at a point t with 28 <= d - t <= 150 days (lead time: the longest such d - t); recall weighs each churner
  by its MRR 125 days before d;
- noise is the largest share, over the points, of paying customers that are flagged.

`Tally` adds customers up one at a time, so the caller streams them per batch and memory stays bounded.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from statistics import median
from typing import Any

from metrics.at_risk import (
    DEFAULT_THRESHOLDS,
    CustomerRecords,
    RevenueLine,
    Thresholds,
    evaluate,
)
from metrics.calendar import day_start, day_ts, moment_ts, months_back, utc_day

DAY = 86400
FIRST_K, LAST_K = 4, 15
HIT_DAYS = 120
CONTRACTION = 0.9  # MRR at or below 90% of MRR at the flag is a hit
LEAD_MIN, LEAD_MAX = 28, 150
RECALL_MRR_DAYS = 125
MIN_CHURNERS = 5


def backtest_points(as_of: datetime) -> list[datetime]:
    """t_15 .. t_4 (oldest first): the as-of day minus 15..4 calendar months, each at 00:00 UTC."""
    day = day_start(as_of.date())
    return [months_back(day, k) for k in range(LAST_K, FIRST_K - 1, -1)]


def span(points: Sequence[datetime]) -> tuple[int, int]:
    """The instants a customer must have paid within to matter: from t_15 to t_4 + 120 days."""
    return moment_ts(points[0]), moment_ts(points[-1]) + HIT_DAYS * DAY


class MrrSteps:
    """A customer's MRR over time: the value from each boundary instant on (never below 0)."""

    def __init__(self, revenue: Iterable[RevenueLine]) -> None:
        delta: dict[int, int] = defaultdict(int)
        for line in revenue:
            if line.end > line.start:
                delta[line.start] += line.monthly
                delta[line.end] -= line.monthly
        self.instants = sorted(delta)
        self.values: list[int] = []
        running = 0
        for instant in self.instants:
            running += delta[instant]
            self.values.append(max(0, running))

    @classmethod
    def of(cls, instants: Sequence[int], values: Sequence[int]) -> MrrSteps:
        """Steps kept from an earlier night (`instants`, `values` as computed then)."""
        steps = cls(())
        steps.instants, steps.values = list(instants), list(values)
        return steps

    def at(self, t: int) -> int:
        i = bisect_right(self.instants, t)
        return self.values[i - 1] if i else 0

    def lowest(self, after: int, until: int) -> int | None:
        """The lowest MRR taken at a change in (after, until], or None when it does not change there."""
        lo, hi = bisect_right(self.instants, after), bisect_right(self.instants, until)
        return min(self.values[lo:hi]) if hi > lo else None

    def churns(self, first: int, last: int) -> list[int]:
        """Instants in [first, last] where MRR fell from > 0 to 0."""
        out = []
        for i, instant in enumerate(self.instants):
            if first <= instant <= last and self.values[i] == 0 and i and self.values[i - 1] > 0:
                out.append(instant)
        return out


def is_hit(steps: MrrSteps, t: int, mrr: int) -> bool:
    """Whether, within 120 days after t, MRR reached 0 or fell to 90% or less of `mrr` (MRR at t)."""
    low = steps.lowest(t, t + HIT_DAYS * DAY)
    return low is not None and (low == 0 or low <= CONTRACTION * mrr)


@dataclass(frozen=True)
class Contribution:
    """What one customer adds to a backtest: bit k of `paying` set when its MRR is > 0 at point k; its flags
    as (k, codes, hit); its churns in the span as (instant, MRR 125 days before, k of the oldest flagged point
    28 to 150 days before the churn, or None: missed). Kept by index rather than by date, it holds while the
    points move, until `holds_until`."""

    paying: int
    flags: tuple[tuple[int, tuple[str, ...], bool], ...]
    churns: tuple[tuple[int, int, int | None], ...]


def _day_reaching(bound: int, months: int) -> date:
    """The first as-of day whose point `months` back starts at or after the instant `bound`."""
    return _day_reaching_day(
        utc_day(bound) if bound % DAY == 0 else utc_day(bound) + timedelta(days=1), months
    )


@lru_cache(maxsize=65536)
def _day_reaching_day(target: date, months: int) -> date:
    """The first as-of day whose point `months` back is on or after `target` (customers share most days)."""
    day = months_back(target, -months)
    while months_back(day, months) < target:
        day += timedelta(days=1)
    while months_back(day - timedelta(days=1), months) >= target:
        day -= timedelta(days=1)
    return day


def holds_until(as_of: date, steps: MrrSteps, span_edges: Iterable[int], flagged: Collection[int]) -> date:
    """The first as-of day after `as_of` on which a customer's contribution may differ from the one at
    `as_of` (its points `flagged`), its history and signal spans (edges: `span_edges`) unchanged.

    Each part of a contribution compares a point t with instants of the customer's, and each such instant is a
    boundary for that point: whether it pays (where the MRR starts or stops), its codes (a span's edges), and,
    for a flagged point only, its hit (the MRR at t, and the steps entering (t + 120 days) or leaving (t) the
    hit window; a step to the same value changes nothing, see docs/at-risk.md) and whether it is in a churn's
    lead range (150 and 27 days before the churn's day); for the newest point, a churn entering the span (120
    days before its day) and for the oldest, one leaving it (27 days before). Points move forward with the
    as-of day (never back), so the contribution holds until the first day on which some point reaches its next
    boundary (`tests/metrics/test_backtest_contribution.py` checks it day by day). Bounding a point by what
    it can change keeps the interval long: a point not flagged ignores the monthly ups and downs of usage.
    """
    values = steps.values
    changes, starts_stops = [], []
    for i, instant in enumerate(steps.instants):
        before = values[i - 1] if i else 0
        if values[i] != before:
            changes.append(instant)
            if (values[i] > 0) != (before > 0):
                starts_stops.append(instant)
    churns = [day_ts(utc_day(c)) for c in steps.churns(0, 2**62)]
    every = _bounds([*span_edges, *starts_stops])
    when_flagged = _bounds(
        [*changes, *(s - HIT_DAYS * DAY for s in changes)]
        + [c - n * DAY for c in churns for n in (LEAD_MAX, LEAD_MIN - 1)]
    )
    points = _point_instants(as_of)
    newest, oldest = len(points) - 1, 0
    found = date.max
    for k, t in enumerate(points):
        ahead = [_next(every, t)]
        if k in flagged:
            ahead.append(_next(when_flagged, t))
        if k == newest:
            ahead.append(_next(_bounds([c - HIT_DAYS * DAY for c in churns]), t))
        if k == oldest:
            ahead.append(_next(_bounds([c - (LEAD_MIN - 1) * DAY for c in churns]), t))
        bound = min(ahead)
        if bound < _FAR:
            found = min(found, _day_reaching(bound, LAST_K - k))
    return found


@lru_cache(maxsize=64)
def _point_instants(as_of: date) -> tuple[int, ...]:
    """The instants of `as_of`'s points: every customer due on a night asks for the same twelve."""
    return tuple(moment_ts(p) for p in backtest_points(day_start(as_of)))


def _bounds(instants: Iterable[int]) -> list[int]:
    return sorted(b for b in set(instants) if b < _FAR)  # an open span's end (FOREVER) is no boundary


def _next(bounds: list[int], t: int) -> int:
    """The first boundary after t (_FAR: none)."""
    i = bisect_right(bounds, t)
    return bounds[i] if i < len(bounds) else _FAR


_FAR = day_ts(date(9000, 1, 1))


@dataclass(frozen=True)
class Churner:
    customer_id: str
    name: str
    mrr: int  # MRR 125 days before the churn, reporting minor units
    churned_on: date
    lead_days: int | None  # None: missed


@dataclass
class Tally:
    """The backtest figures, added up customer by customer."""

    points: list[datetime]
    currency: str
    paying: list[int] = field(default_factory=list)
    flagged: list[int] = field(default_factory=list)
    flags: int = 0
    hits: int = 0
    by_signal: dict[str, list[int]] = field(default_factory=dict)  # code -> [flags, hits]
    churners: list[Churner] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.instants = [moment_ts(p) for p in self.points]
        self.days = [p.date() for p in self.points]
        self.paying = [0] * len(self.points)
        self.flagged = [0] * len(self.points)
        first, last = (
            utc_day(self.instants[0]).toordinal() + LEAD_MIN,
            utc_day(span(self.points)[1]).toordinal(),
        )
        self.churn_days = (first, last)

    def add(
        self,
        customer_id: str,
        name: str,
        revenue: Iterable[RevenueLine],
        judge: Callable[[int, int, int], Sequence[str] | None],
    ) -> None:
        """One customer: `judge(k, instant, mrr)` is its signal codes at point k (None: not flagged)."""
        self.add_contribution(customer_id, name, self.contribution(MrrSteps(revenue), judge))

    def contribution(
        self, steps: MrrSteps, judge: Callable[[int, int, int], Sequence[str] | None]
    ) -> Contribution:
        """What the customer adds at these points: paying, flags and their outcomes, churns in the span."""
        paying = 0
        flags: list[tuple[int, tuple[str, ...], bool]] = []
        for k, t in enumerate(self.instants):
            mrr = steps.at(t)
            if mrr <= 0:
                continue
            paying |= 1 << k
            codes = judge(k, t, mrr)
            if codes:
                flags.append((k, tuple(codes), is_hit(steps, t, mrr)))
        first, last = self.churn_days
        churns: list[tuple[int, int, int | None]] = []
        for instant in steps.churns(self.instants[0], span(self.points)[1] + DAY):
            day = utc_day(instant)
            if not first <= day.toordinal() <= last:
                continue
            # the longest lead is the oldest flagged point in range: kept as its index (days move nightly)
            leads = [k for k, _, _ in flags if LEAD_MIN <= (day - self.days[k]).days <= LEAD_MAX]
            churns.append((instant, steps.at(instant - RECALL_MRR_DAYS * DAY), min(leads) if leads else None))
        return Contribution(paying, tuple(flags), tuple(churns))

    def add_contribution(self, customer_id: str, name: str, found: Contribution) -> None:
        """Adds one customer's contribution (computed now, or kept from a night it still holds for)."""
        for k in range(len(self.instants)):
            if found.paying >> k & 1:
                self.paying[k] += 1
        for k, codes, hit in found.flags:
            self.flagged[k] += 1
            self.flags += 1
            self.hits += hit
            for code in dict.fromkeys(codes):
                counts = self.by_signal.setdefault(code, [0, 0])
                counts[0] += 1
                counts[1] += hit
        for instant, weight, oldest in found.churns:
            day = utc_day(instant)
            lead = (day - self.days[oldest]).days if oldest is not None else None
            self.churners.append(Churner(customer_id, name, weight, day, lead))

    def result(self, as_of: datetime) -> BacktestResult:
        return BacktestResult(
            as_of.date(),
            self.days,
            self.currency,
            self.flags,
            self.hits,
            {code: (c[0], c[1]) for code, c in sorted(self.by_signal.items())},
            list(zip(self.paying, self.flagged, strict=True)),
            sorted(self.churners, key=lambda c: (c.churned_on, c.customer_id)),
        )


def backtest_of(
    customers: Iterable[CustomerRecords],
    as_of: datetime,
    current: Sequence[bool] | None = None,
    th: Thresholds = DEFAULT_THRESHOLDS,
) -> BacktestResult:
    """The backtest over these customers' records (streamed: one customer at a time is enough).

    `current[k]`: whether the stored state describes point k (never, for points months back in practice).
    """
    points = backtest_points(as_of)
    now = list(current) if current is not None else [False] * len(points)
    tally = Tally(points, "")
    for records in customers:
        tally.currency = records.currency

        def judge(k: int, t: int, mrr: int, records: CustomerRecords = records) -> Sequence[str] | None:
            found = evaluate(records, t, mrr, now[k], th)
            return found.codes if found is not None else None

        tally.add(records.customer_id, records.name, records.revenue, judge)
    return tally.result(as_of)


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


@dataclass(frozen=True)
class BacktestResult:
    """The figures of one backtest, and what the report needs to draw them (churners by month)."""

    as_of: date
    points: list[date]
    currency: str
    flags: int
    hits: int
    by_signal: dict[str, tuple[int, int]]  # code -> (flags, hits)
    per_point: list[tuple[int, int]]  # (paying, flagged) at each point
    churners: list[Churner]

    @property
    def precision(self) -> float | None:
        return _ratio(self.hits, self.flags)

    @property
    def caught(self) -> list[Churner]:
        return [c for c in self.churners if c.lead_days is not None]

    @property
    def recall(self) -> float | None:
        return _ratio(sum(c.mrr for c in self.caught), sum(c.mrr for c in self.churners))

    @property
    def noise(self) -> float | None:
        shares = [flagged / paying for paying, flagged in self.per_point if paying]
        return round(max(shares), 4) if shares else None

    @property
    def median_lead_days(self) -> float | None:
        leads = [c.lead_days for c in self.caught if c.lead_days is not None]
        return float(median(leads)) if leads else None

    def warnings(self) -> list[dict[str, str]]:
        count = len(self.churners)
        if count == 0:
            return [
                {
                    "code": "no_churners",
                    "message": "no customer churned in the backtest's span: recall and lead time cannot be "
                    "measured yet",
                }
            ]
        if count < MIN_CHURNERS:
            return [
                {
                    "code": "too_few_churners",
                    "message": f"too few churners to judge: {count} in the span (at least {MIN_CHURNERS} "
                    "are needed for the figures to mean much)",
                }
            ]
        return []

    def by_month(self) -> list[dict[str, Any]]:
        """Churned MRR per month of churn, caught and missed, with the caught churners' lead times."""
        months: dict[str, dict[str, Any]] = {}
        for c in self.churners:
            row = months.setdefault(c.churned_on.strftime("%Y-%m"), {"caught": 0, "missed": 0, "leads": []})
            if c.lead_days is None:
                row["missed"] += c.mrr
            else:
                row["caught"] += c.mrr
                row["leads"].append(c.lead_days)
        return [{"month": m, **months[m]} for m in sorted(months)]


def to_record(result: BacktestResult) -> dict[str, Any]:
    """The result as plain JSON for storage (amounts in minor units), read back by `from_record`."""
    return {
        "as_of": result.as_of.isoformat(),
        "points": [d.isoformat() for d in result.points],
        "currency": result.currency,
        "flags": result.flags,
        "hits": result.hits,
        "by_signal": {code: list(v) for code, v in result.by_signal.items()},
        "per_point": [list(p) for p in result.per_point],
        "churners": [
            [c.customer_id, c.name, c.mrr, c.churned_on.isoformat(), c.lead_days] for c in result.churners
        ],
    }


def from_record(data: dict[str, Any]) -> BacktestResult:
    return BacktestResult(
        date.fromisoformat(data["as_of"]),
        [date.fromisoformat(d) for d in data["points"]],
        data["currency"],
        int(data["flags"]),
        int(data["hits"]),
        {code: (int(v[0]), int(v[1])) for code, v in data["by_signal"].items()},
        [(int(p[0]), int(p[1])) for p in data["per_point"]],
        [Churner(c[0], c[1], int(c[2]), date.fromisoformat(c[3]), c[4]) for c in data["churners"]],
    )
