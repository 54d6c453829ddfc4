"""The board summary sentence and the churn scenario."""

from __future__ import annotations

from decimal import Decimal

from metrics.cohorts import Aggregates, CustomerPair, aggregate
from metrics.summary import board_summary, churn_scenario, lever_sentence, whole


def test_whole_money() -> None:
    assert whole(1_800_049, "usd") == "$18,000"
    assert whole(5000, "jpy") == "¥5,000"


def test_sentence_names_the_lever_that_moved_nrr() -> None:
    down = aggregate(
        [CustomerPair(100_000, 0), CustomerPair(100_000, 90_000), CustomerPair(100_000, 102_000)]
    )
    # churn 1000.00, contraction 100.00, expansion 20.00: NRR (300000 - 100000 - 10000 + 2000) / 300000 = 64%
    assert lever_sentence(down, "usd") == (
        "NRR 64% is pulled down by churn ($1,000) and contraction ($100), "
        "which expansion ($20) does not make up."
    )
    assert lever_sentence(Aggregates(), "usd").startswith("No customer paid")


def test_churn_scenario() -> None:
    # start $10,000; churn $800, contraction $200, expansion $500 -> NRR 95%.
    agg = Aggregates(
        customers=10,
        retained=9,
        start=1_000_000,
        end=950_000,
        expansion=50_000,
        contraction=20_000,
        churn=80_000,
    )
    s = churn_scenario(agg, "usd", Decimal("0.2"))
    # 20% less of $1,000 lost = $200 a month kept: NRR 97%, $2,400 a year
    assert s["nrr"] == 0.97
    assert s["annual_revenue_recovered"] == 2400.0
    assert "20% lower" in s["sentence"] and "$2,400" in s["sentence"] and "97%" in s["sentence"]


def test_board_summary_shape() -> None:
    agg = Aggregates(
        customers=10,
        retained=9,
        start=1_000_000,
        end=1_050_000,
        expansion=180_000,
        contraction=50_000,
        churn=80_000,
    )
    out = board_summary(agg, "usd")
    assert out["nrr"] == 1.05 and out["grr"] == 0.87 and out["logo_retention"] == 0.9
    assert (out["expansion"], out["churned"], out["contraction"]) == (1800.0, 800.0, 500.0)
    assert out["sentence"] == (
        "NRR 105% is carried by expansion ($1,800) outweighing churn ($800) and contraction ($500)."
    )
    assert board_summary(Aggregates(), "usd")["scenario"]["nrr"] is None
