"""MRR movements between consecutive month starts (docs/movements.md).

Each customer falls in exactly one bucket per month, and each bucket adds that customer's signed change, so
the buckets always sum to the change in total MRR: that identity is the test of this module, not a
coincidence. `new` is a customer's first month with MRR > 0 in the series given; a later return from 0 is a
`reactivation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

BUCKETS = ("new", "expansion", "contraction", "churn", "reactivation")


@dataclass
class MonthMovements:
    month: date
    mrr: int
    new: int = 0
    expansion: int = 0
    contraction: int = 0
    churn: int = 0
    reactivation: int = 0
    customers: dict[str, str] = field(default_factory=dict)  # customer -> bucket

    @property
    def net(self) -> int:
        return self.new + self.expansion + self.contraction + self.churn + self.reactivation


def bucket(before: int, after: int, paid_before: bool) -> str | None:
    """The bucket of one customer's change from one month start to the next (None when unchanged)."""
    if before <= 0 and after > 0:
        return "reactivation" if paid_before else "new"
    if before > 0 and after <= 0:
        return "churn"
    if after > before:
        return "expansion"
    if after < before:
        return "contraction"
    return None


def movements(series: Sequence[tuple[date, Mapping[str, int]]]) -> list[MonthMovements]:
    """Movements for each month start of `series` (ascending; MRR per customer, absent = 0).

    The first month is measured against nothing (everyone paying is new). Churn and contraction are negative.
    """
    previous: Mapping[str, int] = {}
    ever_paid: set[str] = set()
    out: list[MonthMovements] = []
    for month, current in series:
        row = MonthMovements(month=month, mrr=sum(v for v in current.values() if v > 0))
        for customer in set(previous) | set(current):
            before = max(previous.get(customer, 0), 0)
            after = max(current.get(customer, 0), 0)
            name = bucket(before, after, customer in ever_paid)
            if name is None:
                continue
            setattr(row, name, getattr(row, name) + after - before)
            row.customers[customer] = name
        ever_paid.update(c for c, v in current.items() if v > 0)
        out.append(row)
        previous = current
    return out
