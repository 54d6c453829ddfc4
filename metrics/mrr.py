"""Monthly normalization of a recurring line and MRR at an instant (docs/mrr.md).

Rounding (documented in docs/mrr.md): the monthly amount is computed exactly as a fraction (net amount
/ months) and rounded once, half-even, to an integer of the minor unit, per line. The reporting-currency
figure is rounded once too, from the exact fraction times the rate, never from the already rounded line
figure, so conversion does not compound two roundings. Totals are sums of those integers, which is what makes
movements add up exactly.

A customer's MRR is never below 0: a negative sum (credits on recurring lines) is reported as 0.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

from metrics.calendar import utc_datetime
from metrics.money import exponent
from metrics.records import LineRecord

SECONDS_PER_DAY = 86_400
DAYS_PER_MONTH = Fraction(36525, 1200)  # 365.25 / 12

# Months in one interval unit: day 12/365, week 12/52, month 1, year 12, as (numerator, denominator).
MONTHS_PER_INTERVAL: dict[str, tuple[int, int]] = {
    "day": (12, 365),
    "week": (12, 52),
    "month": (1, 1),
    "year": (12, 1),
}


def months_ratio(record: LineRecord) -> tuple[int, int] | None:
    """Months one line bills, exact: from the recurring price, else the period's length (None: empty)."""
    return months_of_period(record.interval, record.interval_count, record.period_start, record.period_end)


def months_of_period(
    interval: str | None, interval_count: int | None, period_start: int, period_end: int
) -> tuple[int, int] | None:
    """months_ratio from the fields themselves (the rebuild calls it per stored line without a record)."""
    unit = MONTHS_PER_INTERVAL.get(interval or "")
    if unit is not None:
        return unit[0] * (interval_count or 1), unit[1]
    seconds = period_end - period_start
    if seconds <= 0:
        return None
    return seconds * 1200, SECONDS_PER_DAY * 36525  # days / (365.25 / 12)


def monthly_ratio(record: LineRecord) -> tuple[int, int]:
    """The net amount per month, exact, as (numerator, positive denominator) in line-currency minor units.

    Integers rather than Fraction objects: the rebuild runs this for millions of lines.
    """
    months = months_ratio(record)
    if months is None:
        return 0, 1
    return record.net_amount * months[1], months[0]


def months_of(record: LineRecord) -> Fraction | None:
    months = months_ratio(record)
    return None if months is None else Fraction(*months)


def monthly_exact(record: LineRecord) -> Fraction:
    """The line's net amount per month, exact, in the line currency's minor unit."""
    return Fraction(*monthly_ratio(record))


def round_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-even, exactly (denominator > 0)."""
    q, r = divmod(numerator, denominator)
    twice = 2 * r
    if twice > denominator or (twice == denominator and q % 2 == 1):
        q += 1
    return q


def round_half_even(value: Fraction) -> int:
    return round_div(value.numerator, value.denominator)


def monthly_amount(record: LineRecord) -> int:
    return round_div(*monthly_ratio(record))


def convert(
    numerator: int, denominator: int, currency: str, reporting: str, rate: Decimal | Fraction | None
) -> int | None:
    """An exact amount (numerator / denominator minor units of `currency`) in reporting minor units.

    Rounded once, half-even. None when the currencies differ and no rate is known: never 1:1 by default.
    """
    if currency.lower() == reporting.lower():
        return round_div(numerator, denominator)
    if rate is None:
        return None
    rate_num, rate_den = rate.as_integer_ratio()
    shift = exponent(reporting) - exponent(currency)
    numerator *= rate_num * (10**shift if shift > 0 else 1)
    denominator *= rate_den * (10**-shift if shift < 0 else 1)
    return round_div(numerator, denominator)


def to_reporting(
    exact_monthly: Fraction, currency: str, reporting: str, rate: Decimal | Fraction | None
) -> int | None:
    """Minor units of the reporting currency, or None when no rate is known (never 1:1 by default)."""
    return convert(exact_monthly.numerator, exact_monthly.denominator, currency, reporting, rate)


@dataclass(frozen=True, slots=True)
class CountedLine:
    """A line as MRR sees it: who, when it counts ([start, end)), monthly amount in reporting currency."""

    customer_id: str
    start: int
    end: int
    monthly: int


def mrr_at(lines: Iterable[CountedLine], t: int) -> dict[str, int]:
    """MRR(c, t) for every customer paying at t: lines with start <= t < end, summed, never below 0."""
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        if line.start <= t < line.end:
            totals[line.customer_id] += line.monthly
    return {c: v for c, v in totals.items() if v > 0}


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A counted ledger line as snapshots read it (reporting-currency minor units)."""

    klass: str  # recurring | one_time
    start: int  # period start (recurring)
    end: int  # mrr_end: where it stops counting (recurring)
    monthly: int  # monthly amount (recurring)
    amount: int  # net amount (one_time)
    invoiced_at: int | None
    plan: str | None
    line_id: str


@dataclass(frozen=True, slots=True)
class Point:
    """An instant MRR is taken at, with the calendar month (UTC) its one-time amounts come from."""

    day: date
    t: int
    month: tuple[int, int]


def customer_snapshots(
    entries: Iterable[LedgerEntry], points: Sequence[Point]
) -> list[tuple[date, int, int, str | None]]:
    """One customer's (day, mrr, one_time, plan) at each point where MRR > 0 or one-time amounts exist.

    MRR = recurring lines with start <= t < end (never below 0); plan = the product of the largest such line
    (ties: the smallest line id); one_time = one-time amounts invoiced in the point's calendar month.
    """
    spread = SnapshotSpreader(points)
    rows = [(e.klass, e.start, e.end, e.monthly, e.amount, e.invoiced_at, e.plan, e.line_id) for e in entries]
    return [(points[i].day, mrr, one_time, plan) for i, mrr, one_time, plan in spread(rows)]


EntryRow = tuple[str, int, int, int, int, int | None, str | None, str]


class SnapshotSpreader:
    """customer_snapshots for many customers over the same points, on plain tuples in LedgerEntry's field
    order (the snapshot rebuild runs it per customer over every counted line: no object per line)."""

    def __init__(self, points: Sequence[Point]) -> None:
        self.n = len(points)
        self.instants = [p.t for p in points]
        by_month: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, p in enumerate(points):
            by_month[p.month].append(i)
        self.by_month = dict(by_month)

    def __call__(self, entries: Iterable[EntryRow]) -> list[tuple[int, int, int, str | None]]:
        """(point index, mrr, one_time, plan) where MRR > 0 or one-time amounts exist, in point order."""
        n, instants, by_month = self.n, self.instants, self.by_month
        mrr = [0] * n
        one_time = [0] * n
        best: list[tuple[int, str, str | None] | None] = [None] * n
        any_one_time = False
        for klass, start, end, monthly, amount, invoiced_at, plan, line_id in entries:
            if klass == "recurring":
                for i in range(bisect_left(instants, start), bisect_left(instants, end)):
                    mrr[i] += monthly
                    b = best[i]
                    if b is None or monthly > b[0] or (monthly == b[0] and line_id < b[1]):
                        best[i] = (monthly, line_id, plan)
            elif invoiced_at is not None:
                when = utc_datetime(invoiced_at)
                for i in by_month.get((when.year, when.month), ()):
                    one_time[i] += amount
                    any_one_time = True
        out = []
        for i in range(n):
            value = mrr[i]
            if value > 0:
                b = best[i]
                out.append((i, value, one_time[i], b[2] if b is not None else None))
            elif any_one_time and one_time[i] != 0:
                out.append((i, 0, one_time[i], None))
        return out
