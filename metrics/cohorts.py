"""Cohort retention for a window (t0, t1]: NRR, GRR, logo retention (docs/retention.md).

The figures are built from additive aggregates (sums, counts and one maximum), so the SQL layer can aggregate
per segment and this module can fold segments into a headline without ever seeing a customer row twice. The
ratios are computed here, once, from integers in minor units; a float appears only as the ratio itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from metrics.calendar import months_back


@dataclass(frozen=True)
class Window:
    """A retention window (t0, t1]; t0 and t1 are days meaning 00:00 UTC, when MRR snapshots are taken."""

    name: str  # "t12m" | "monthly"
    t0: date
    t1: date


def windows_for(t1: date) -> tuple[Window, Window]:
    """The trailing-12-month and the monthly window ending at t1 (calendar months, docs/retention.md)."""
    return Window("t12m", months_back(t1, 12), t1), Window("monthly", months_back(t1, 1), t1)


@dataclass(frozen=True)
class CustomerPair:
    """One customer's MRR at t0 and t1 and the one-time amounts invoiced in the months of t0 and t1."""

    mrr0: int
    mrr1: int
    one_time0: int = 0
    one_time1: int = 0


@dataclass(frozen=True)
class Aggregates:
    """Additive aggregates over the cohort C = {c : MRR(c, t0) > 0}, in reporting-currency minor units."""

    customers: int = 0
    retained: int = 0
    start: int = 0
    end: int = 0
    expansion: int = 0
    contraction: int = 0
    churn: int = 0
    max_expansion: int = 0  # the largest single customer's expansion (for the concentration warning)
    start_with_one_time: int = 0
    end_with_one_time: int = 0

    def __add__(self, other: Aggregates) -> Aggregates:
        return Aggregates(
            customers=self.customers + other.customers,
            retained=self.retained + other.retained,
            start=self.start + other.start,
            end=self.end + other.end,
            expansion=self.expansion + other.expansion,
            contraction=self.contraction + other.contraction,
            churn=self.churn + other.churn,
            max_expansion=max(self.max_expansion, other.max_expansion),
            start_with_one_time=self.start_with_one_time + other.start_with_one_time,
            end_with_one_time=self.end_with_one_time + other.end_with_one_time,
        )

    @property
    def nrr(self) -> float | None:
        """(start + expansion - contraction - churn) / start, which equals end / start."""
        return _ratio(self.start + self.expansion - self.contraction - self.churn, self.start)

    @property
    def grr(self) -> float | None:
        """(start - contraction - churn) / start: expansion never counts, so it cannot exceed 1."""
        return _ratio(self.start - self.contraction - self.churn, self.start)

    @property
    def logo_retention(self) -> float | None:
        return _ratio(self.retained, self.customers)

    @property
    def nrr_including_one_time(self) -> float | None:
        """The common mistake, kept as a diagnostic: one-time fees of the t0/t1 months added to both ends."""
        return _ratio(self.end_with_one_time, self.start_with_one_time)


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator <= 0 else numerator / denominator


def aggregate(pairs: Iterable[CustomerPair]) -> Aggregates:
    """The reference definition over customer pairs; the SQL in cohort_sql.py computes the same sums."""
    total = Aggregates()
    for p in pairs:
        if p.mrr0 <= 0:
            continue  # not in the cohort: new after t0, or not paying at t0
        up = max(0, p.mrr1 - p.mrr0)
        total = total + Aggregates(
            customers=1,
            retained=1 if p.mrr1 > 0 else 0,
            start=p.mrr0,
            end=max(0, p.mrr1),
            expansion=up,
            contraction=max(0, p.mrr0 - p.mrr1) if p.mrr1 > 0 else 0,
            churn=p.mrr0 if p.mrr1 <= 0 else 0,
            max_expansion=up,
            start_with_one_time=p.mrr0 + p.one_time0,
            end_with_one_time=max(0, p.mrr1) + p.one_time1,
        )
    return total


def fold(parts: Iterable[Aggregates]) -> Aggregates:
    """Sum of segment aggregates: the headline is the fold of any partition of the cohort."""
    total = Aggregates()
    for part in parts:
        total = total + part
    return total


def annualize(monthly_nrr: float | None) -> float | None:
    """Monthly NRR compounded over 12 months: 0.99 a month is 0.886 a year, never 0.99 a year."""
    return None if monthly_nrr is None else monthly_nrr**12
