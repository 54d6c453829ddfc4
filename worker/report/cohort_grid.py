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


def cohort_grid(rows: Iterable[tuple[str, date, int]], last_month: date | None = None) -> CohortGrid:
    """Rows are (customer id, month-start day, MRR in minor units); other days are ignored.

    `last_month` is the newest month observed (default: the newest row); cells after it stay None, so a young
    cohort shows as a short row rather than as churn.
    """
    by_customer: dict[str, dict[int, int]] = defaultdict(dict)
    newest = _index(last_month) if last_month else None
    for customer, day, mrr in rows:
        if day.day != 1:
            continue
        by_customer[customer][_index(day)] = mrr
        if last_month is None:
            newest = max(newest or 0, _index(day))
    if newest is None:
        return CohortGrid()
    start: dict[int, int] = defaultdict(int)
    kept: dict[tuple[int, int], int] = defaultdict(int)
    size: dict[int, int] = defaultdict(int)
    for months in by_customer.values():
        paying = sorted(m for m, mrr in months.items() if mrr > 0)
        if not paying:
            continue
        first = paying[0]
        size[first] += 1
        start[first] += months[first]
        for m in range(first, newest + 1):
            kept[(first, m - first)] += months.get(m, 0)
    grid = CohortGrid()
    for first in sorted(size):
        grid.cohorts.append(f"{first // 12:04d}-{first % 12 + 1:02d}")
        grid.sizes.append(size[first])
        span = newest - first + 1
        grid.values.append([round(kept[(first, k)] / start[first], 4) for k in range(span)])
    width = max((len(v) for v in grid.values), default=0)
    grid.values = [v + [None] * (width - len(v)) for v in grid.values]
    return grid
