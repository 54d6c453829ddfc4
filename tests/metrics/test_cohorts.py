"""Windows and the ratios over additive aggregates (docs/retention.md), without a database."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from metrics.calendar import month_starts_between, months_back
from metrics.cohorts import (
    Aggregates,
    CustomerPair,
    aggregate,
    annualize,
    fold,
    windows_for,
)


def test_months_back_is_calendar_months_clamped_to_month_end() -> None:
    assert months_back(date(2026, 11, 25), 12) == date(2025, 11, 25)
    assert months_back(date(2026, 1, 15), 1) == date(2025, 12, 15)
    assert months_back(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_back(date(2024, 3, 31), 1) == date(2024, 2, 29)
    assert months_back(date(2026, 1, 31), -1) == date(2026, 2, 28)


def test_windows_for_t1() -> None:
    t12m, monthly = windows_for(date(2026, 11, 1))
    assert (t12m.t0, t12m.t1) == (date(2025, 11, 1), date(2026, 11, 1))
    assert (monthly.t0, monthly.t1) == (date(2026, 10, 1), date(2026, 11, 1))


def test_new_customers_after_t0_are_excluded_whatever_they_pay() -> None:
    agg = aggregate([CustomerPair(1000, 1000), CustomerPair(0, 50_000), CustomerPair(0, 0)])
    assert (agg.customers, agg.start, agg.end, agg.expansion, agg.nrr) == (1, 1000, 1000, 0, 1.0)


def test_each_bucket_follows_its_definition() -> None:
    agg = aggregate(
        [
            CustomerPair(1000, 1500),  # expansion 500
            CustomerPair(1000, 600),  # contraction 400
            CustomerPair(1000, 0),  # churn 1000
            CustomerPair(1000, 1000),
        ]
    )
    assert (agg.expansion, agg.contraction, agg.churn) == (500, 400, 1000)
    assert (agg.customers, agg.retained, agg.max_expansion) == (4, 3, 500)
    assert agg.nrr == (4000 + 500 - 400 - 1000) / 4000 == agg.end / agg.start
    assert agg.grr == (4000 - 400 - 1000) / 4000
    assert agg.logo_retention == 0.75


def test_empty_cohort_has_null_ratios() -> None:
    agg = aggregate([CustomerPair(0, 100)])
    assert (agg.nrr, agg.grr, agg.logo_retention, agg.nrr_including_one_time) == (None, None, None, None)
    assert annualize(agg.nrr) is None


def test_one_time_counts_only_in_the_diagnostic_ratio() -> None:
    agg = aggregate([CustomerPair(1000, 1000, one_time0=0, one_time1=500)])
    assert agg.nrr == 1.0
    assert agg.nrr_including_one_time == 1.5


def test_annualize_compounds_twelve_months() -> None:
    assert round(annualize(0.99) or 0, 4) == 0.8864
    assert annualize(1.0) == 1.0


def test_month_starts_between() -> None:
    assert month_starts_between(date(2025, 11, 1), date(2026, 2, 1)) == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    assert month_starts_between(date(2025, 11, 15), date(2026, 1, 31)) == [
        date(2025, 12, 1),
        date(2026, 1, 1),
    ]


pair = st.builds(
    CustomerPair, st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**5), st.integers(0, 10**5)
)


@given(st.lists(pair, max_size=40), st.integers(1, 5))
def test_identities_hold_and_any_partition_folds_to_the_whole(pairs: list[CustomerPair], parts: int) -> None:
    whole = aggregate(pairs)
    assert whole.start + whole.expansion - whole.contraction - whole.churn == whole.end
    if whole.grr is not None:
        assert whole.grr <= 1
        assert whole.retained <= whole.customers
    split = fold(aggregate(pairs[i::parts]) for i in range(parts))
    assert split == whole
    assert fold([]) == Aggregates()
