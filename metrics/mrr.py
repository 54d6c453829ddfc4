"""Monthly normalization of a recurring line and MRR at an instant (METRICS.md section 3).

Rounding (documented in docs/definitions.md): the monthly amount is computed exactly as a fraction
(net amount / months) and rounded once, half-even, to an integer of the minor unit, per line. The
reporting-currency
figure is rounded once too, from the exact fraction times the rate, never from the already rounded line
figure, so
conversion does not compound two roundings. Totals are sums of those integers, which is what makes movements
add
up exactly.

A customer's MRR is never below 0: a negative sum (credits on recurring lines) is reported as 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from metrics.money import exponent
from metrics.records import LineRecord

SECONDS_PER_DAY = 86_400
DAYS_PER_MONTH = Fraction(36525, 1200)  # 365.25 / 12

# Months in one interval unit: day 12/365, week 12/52, month 1, year 12.
MONTHS_PER_INTERVAL: dict[str, Fraction] = {
    "day": Fraction(12, 365),
    "week": Fraction(12, 52),
    "month": Fraction(1),
    "year": Fraction(12),
}


def months_of(record: LineRecord) -> Fraction | None:
    """How many months one line bills: from the recurring price, else the period's length (None if empty)."""
    if record.interval in MONTHS_PER_INTERVAL:
        return MONTHS_PER_INTERVAL[record.interval] * (record.interval_count or 1)
    seconds = record.period_end - record.period_start
    if seconds <= 0:
        return None
    return Fraction(seconds, SECONDS_PER_DAY) / DAYS_PER_MONTH


def monthly_exact(record: LineRecord) -> Fraction:
    """The line's net amount per month, exact, in the line currency's minor unit."""
    months = months_of(record)
    if months is None:
        return Fraction(0)
    return Fraction(record.net_amount) / months


def round_half_even(value: Fraction) -> int:
    """Python's round() on a Fraction is half-even and exact."""
    return round(value)


def monthly_amount(record: LineRecord) -> int:
    return round_half_even(monthly_exact(record))


def to_reporting(exact_monthly: Fraction, currency: str, reporting: str, rate: Decimal | None) -> int | None:
    """Minor units of the reporting currency, or None when no rate is known (never 1:1 by default)."""
    if currency.lower() == reporting.lower():
        return round_half_even(exact_monthly)
    if rate is None:
        return None
    scale = Fraction(10) ** (exponent(reporting) - exponent(currency))
    return round_half_even(exact_monthly * Fraction(rate) * scale)


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
