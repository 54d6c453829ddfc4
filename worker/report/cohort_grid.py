"""The cohort retention grid of the report: signup cohort x months since signup, from month-start snapshots.

Each cell is the cohort's revenue retention: the MRR its customers pay k months after their first paying
month, over what they paid in that first month (so expansion can push a cell above 100%). A cohort is the
month of a customer's first MRR > 0 (docs/retention.md). Pure, so it is tested without a database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any


@dataclass
class CohortGrid:
    cohorts: list[str] = field(default_factory=list)  # "YYYY-MM", oldest first
    sizes: list[int] = field(default_factory=list)  # customers in each cohort
    values: list[list[float | None]] = field(default_factory=list)  # [cohort][k], None where not yet observed

    def as_json(self) -> dict[str, Any]:
        return {"cohorts": self.cohorts, "sizes": self.sizes, "values": self.values}


def _index(day: date) -> int:
    return day.year * 12 + day.month - 1


@dataclass
class CohortSums:
    """What the grid is made of, summed over customers (the database can sum it: worker/mrr_queries.py
    cohort_sums): per cohort (its first paying month) the customers and their MRR in that month, and per
    (cohort, month start) the MRR they pay then."""

    sizes: dict[date, tuple[int, int]] = field(default_factory=dict)
    kept: dict[tuple[date, date], int] = field(default_factory=dict)


def cohort_sums(rows: Iterable[tuple[str, date, int]], last_month: date | None = None) -> CohortSums:
    """CohortSums from (customer id, day, MRR in minor units) rows; days other than month starts, and month
    starts after `last_month`, are ignored. Holds every customer's months: for tests and small accounts."""
    by_customer: dict[str, dict[date, int]] = defaultdict(dict)
    for customer, day, mrr in rows:
        if day.day == 1 and (last_month is None or day <= last_month):
            by_customer[customer][day] = mrr
    sums = CohortSums()
    sizes: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    kept: dict[tuple[date, date], int] = defaultdict(int)
    for months in by_customer.values():
        paying = [d for d in sorted(months) if months[d] > 0]
        if not paying:
            continue
        first = paying[0]
        sizes[first][0] += 1
        sizes[first][1] += months[first]
        for day, mrr in months.items():
            if day >= first:
                kept[(first, day)] += mrr
    sums.sizes = {d: (n, mrr) for d, (n, mrr) in sizes.items()}
    sums.kept = dict(kept)
    return sums


def cohort_grid(rows: Iterable[tuple[str, date, int]], last_month: date | None = None) -> CohortGrid:
    """Rows are (customer id, month-start day, MRR in minor units); other days are ignored.

    `last_month` is the newest month observed (default: the newest row); cells after it stay None, so a young
    cohort shows as a short row rather than as churn.
    """
    rows = list(rows)
    if last_month is None:
        starts = [day for _, day, _ in rows if day.day == 1]
        last_month = max(starts) if starts else None
    if last_month is None:
        return CohortGrid()
    return grid_of(cohort_sums(rows, last_month), last_month)


def grid_of(sums: CohortSums, last_month: date) -> CohortGrid:
    """The grid from summed cohorts, up to `last_month`: a cohort's months without any row are 0."""
    newest = _index(last_month)
    grid = CohortGrid()
    for first in sorted(sums.sizes):
        size, start = sums.sizes[first]
        base = _index(first)
        by_k: dict[int, int] = defaultdict(int)
        for (cohort, day), mrr in sums.kept.items():
            if cohort == first and day <= last_month:
                by_k[_index(day) - base] += mrr
        grid.cohorts.append(f"{first.year:04d}-{first.month:02d}")
        grid.sizes.append(size)
        grid.values.append([round(by_k[k] / start, 4) for k in range(newest - base + 1)])
    width = max((len(v) for v in grid.values), default=0)
    grid.values = [v + [None] * (width - len(v)) for v in grid.values]
    return grid
