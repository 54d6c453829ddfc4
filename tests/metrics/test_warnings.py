"""The three warnings of docs/warnings.md, at their thresholds."""

from __future__ import annotations

from metrics.cohorts import CustomerPair, aggregate
from metrics.warnings import window_warnings


def codes(pairs: list[CustomerPair]) -> list[str]:
    return [w.code for w in window_warnings(aggregate(pairs), "T12M", "usd")]


def steady(n: int) -> list[CustomerPair]:
    return [CustomerPair(10_000, 10_000)] * n


def test_small_cohort_below_thirty_customers() -> None:
    assert codes(steady(29)) == ["small_cohort"]
    assert codes(steady(30)) == []
    [warning] = window_warnings(aggregate(steady(12)), "plan Pro (T12M)", "usd")
    assert "directional only" in warning.message and "plan Pro (T12M)" in warning.message
    assert "12 customers" in warning.message


def test_empty_cohort_is_flagged_small() -> None:
    assert codes([]) == ["small_cohort"]


def test_expansion_hides_logo_churn_needs_nrr_above_one_and_logos_below_ninety_percent() -> None:
    # 40 customers, 5 leave (logo retention 87.5%), the rest grow enough for NRR > 1
    leaving = [CustomerPair(10_000, 0)] * 5
    growing = [CustomerPair(10_000, 12_000)] * 35
    assert "expansion_hides_logo_churn" in codes(leaving + growing)
    # the same churn without enough expansion: NRR below 1, no warning
    flat = [CustomerPair(10_000, 10_000)] * 35
    assert "expansion_hides_logo_churn" not in codes(leaving + flat)
    # 4 of 40 leave: logo retention exactly 90% is not below 90%
    at_floor = [CustomerPair(10_000, 0)] * 4 + [CustomerPair(10_000, 12_000)] * 36
    assert "expansion_hides_logo_churn" not in codes(at_floor)


def test_expansion_concentration_when_one_customer_is_more_than_half() -> None:
    base = steady(30)
    assert "expansion_concentration" in codes(base + [CustomerPair(1000, 1601), CustomerPair(1000, 1600)])
    # exactly half is not more than half
    assert "expansion_concentration" not in codes(base + [CustomerPair(1000, 1600), CustomerPair(1000, 1600)])
    assert "expansion_concentration" not in codes(base)  # no expansion at all
    [w] = window_warnings(aggregate(base + [CustomerPair(100_000, 400_000)]), "T12M", "usd")
    assert w.code == "expansion_concentration" and "100%" in w.message and "$3,000.00" in w.message
