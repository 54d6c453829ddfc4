"""docs/retention.md: the five worked examples, exactly as worded, through the code the product runs.

Amounts are in cents. The examples speak of ARR or of what a cohort is "worth"; every ratio is the same
whichever unit the amounts are in, so each example uses the example's own figures as the customers' amounts.
"""

from __future__ import annotations

from metrics.cohorts import Aggregates, CustomerPair, aggregate
from metrics.payload import window_json
from metrics.summary import lever_sentence, pct
from metrics.warnings import window_warnings

USD = "usd"
DOLLAR = 100  # cents


def _codes(agg: Aggregates) -> set[str]:
    return {w.code for w in window_warnings(agg, "T12M", USD)}


def test_example_1_expansion_downgrades_and_churn() -> None:
    # $100,000 a year ago in 100 customers of $1,000: 6 grow by $3,000 (expansion $18,000), 10 downgrade
    # by $500 ($5,000), 8 cancel ($8,000).
    # NRR = (100 + 18 - 5 - 8) / 100 = 105%; GRR = (100 - 5 - 8) / 100 = 87%.
    pairs = []
    arr = 1_000 * DOLLAR
    for i in range(100):
        if i < 6:
            pairs.append(CustomerPair(arr, arr + 3_000 * DOLLAR))  # 6 x $3,000 = $18,000 expansion
        elif i < 16:
            pairs.append(CustomerPair(arr, arr - 500 * DOLLAR))  # 10 x $500 = $5,000 downgrades
        elif i < 24:
            pairs.append(CustomerPair(arr, 0))  # 8 x $1,000 = $8,000 churn
        else:
            pairs.append(CustomerPair(arr, arr))
    agg = aggregate(pairs)
    assert (agg.start, agg.expansion, agg.contraction, agg.churn) == (
        100_000 * DOLLAR,
        18_000 * DOLLAR,
        5_000 * DOLLAR,
        8_000 * DOLLAR,
    )
    assert pct(agg.nrr or 0) == "105%"
    assert pct(agg.grr or 0) == "87%"
    assert lever_sentence(agg, USD) == (
        "NRR 105% is carried by expansion ($18,000) outweighing churn ($8,000) and contraction ($5,000)."
    )


def test_example_2_expansion_hides_logo_churn() -> None:
    # 50 customers worth $100k: the two largest at $24k each, ten small ones at $1.2k ($12k), and 38 holding
    # the other $40k (36 x $1,000 + 2 x $2,000). NRR = (100 + 20 - 12) / 100 = 108%; logos 40 / 50 = 80%.
    large = [CustomerPair(24_000 * DOLLAR, 34_000 * DOLLAR) for _ in range(2)]  # +$20k between them
    small = [CustomerPair(1_200 * DOLLAR, 0) for _ in range(10)]  # $12k cancel
    rest = [CustomerPair(1_000 * DOLLAR, 1_000 * DOLLAR) for _ in range(36)]
    rest += [CustomerPair(2_000 * DOLLAR, 2_000 * DOLLAR) for _ in range(2)]
    agg = aggregate(large + small + rest)
    assert agg.customers == 50 and agg.start == 100_000 * DOLLAR
    assert pct(agg.nrr or 0) == "108%"
    assert pct(agg.logo_retention or 0) == "80%"
    assert "expansion_hides_logo_churn" in _codes(agg)
    # two customers share the expansion equally: neither is more than half of it
    assert "expansion_concentration" not in _codes(agg)


def test_example_3_monthly_nrr_is_annualized_not_reported_as_annual() -> None:
    # monthly window: $10,000 of MRR in 100 customers, one $100 customer churns -> monthly NRR 99%
    pairs = [CustomerPair(100 * DOLLAR, 0)] + [CustomerPair(100 * DOLLAR, 100 * DOLLAR)] * 99
    monthly = window_json(aggregate(pairs), USD, "monthly", monthly=True)
    assert monthly["nrr"] == 0.99
    assert pct(monthly["nrr_annualized"]) == "88.6%"
    # the trailing-12-month window never carries an annualized monthly figure
    assert "nrr_annualized" not in window_json(aggregate(pairs), USD, "T12M")


def test_example_4_no_expansion_keeps_95_percent_of_logos_and_97_percent_of_revenue() -> None:
    # $10,000 over 100 customers: 5 churners of $60 ($300 = 3%), 94 of $100 and one of $300 stay unchanged
    pairs = [CustomerPair(60 * DOLLAR, 0)] * 5
    pairs += [CustomerPair(100 * DOLLAR, 100 * DOLLAR)] * 94 + [CustomerPair(300 * DOLLAR, 300 * DOLLAR)]
    agg = aggregate(pairs)
    assert agg.start == 10_000 * DOLLAR and agg.expansion == 0
    assert (pct(agg.nrr or 0), pct(agg.grr or 0), pct(agg.logo_retention or 0)) == ("97%", "97%", "95%")


def test_example_5_one_time_fees_counted_as_expansion() -> None:
    # $100k of recurring MRR at t0 in 50 customers of $2,000; 3 churn ($6k) -> recurring NRR 94%. In the month
    # of t1, $14k of implementation and services fees are invoiced to 7 of the stayers ($2k each), none at t0.
    pairs = [CustomerPair(2_000 * DOLLAR, 0)] * 3
    pairs += [CustomerPair(2_000 * DOLLAR, 2_000 * DOLLAR, 0, 2_000 * DOLLAR)] * 7
    pairs += [CustomerPair(2_000 * DOLLAR, 2_000 * DOLLAR)] * 40
    w = window_json(aggregate(pairs), USD, "T12M")
    assert w["nrr"] == 0.94
    assert w["nrr_including_one_time"] == 1.08
