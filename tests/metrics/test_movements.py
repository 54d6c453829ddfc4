"""Movements (docs/movements.md): one bucket per customer, and the buckets sum to the change in MRR."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from metrics.movements import BUCKETS, bucket, movements

JAN, FEB, MAR, APR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)


def test_each_bucket_by_hand() -> None:
    series = [
        (JAN, {"a": 10000, "b": 5000, "c": 2000}),
        (FEB, {"a": 12000, "b": 4000, "d": 3000}),  # a up 20, b down 10, c churns 20, d new 30
        (MAR, {"a": 12000, "b": 4000, "d": 3000, "c": 2500}),  # c comes back: reactivation 25
    ]
    jan, feb, mar = movements(series)
    assert (jan.new, jan.mrr) == (17000, 17000)
    assert (feb.new, feb.expansion, feb.contraction, feb.churn, feb.reactivation) == (
        3000,
        2000,
        -1000,
        -2000,
        0,
    )
    assert feb.mrr == 19000 and feb.customers == {
        "a": "expansion",
        "b": "contraction",
        "c": "churn",
        "d": "new",
    }
    assert (mar.reactivation, mar.new, mar.mrr) == (2500, 0, 21500)


def test_bucket_rules() -> None:
    assert bucket(0, 5, paid_before=False) == "new"
    assert bucket(0, 5, paid_before=True) == "reactivation"
    assert bucket(5, 0, paid_before=True) == "churn"
    assert bucket(5, 7, paid_before=True) == "expansion"
    assert bucket(7, 5, paid_before=True) == "contraction"
    assert bucket(5, 5, paid_before=True) is None


months = st.lists(
    st.dictionaries(st.sampled_from(list("abcdefgh")), st.integers(0, 10**7), max_size=8),
    min_size=1,
    max_size=12,
)


@given(months)
def test_movements_sum_to_the_change_in_total_mrr(snapshots: list[dict[str, int]]) -> None:
    series = [(date(2026, 1 + i % 12, 1), s) for i, s in enumerate(snapshots)]
    previous_total = 0
    for row in movements(series):
        assert sum(getattr(row, k) for k in BUCKETS) == row.mrr - previous_total
        assert row.new >= 0 and row.expansion >= 0 and row.reactivation >= 0
        assert row.contraction <= 0 and row.churn <= 0 and row.mrr >= 0
        previous_total = row.mrr
