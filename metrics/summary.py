"""The board summary: the T12M figures, which lever moved NRR, and what less churn would be worth.

A board asks two questions of an NRR: what carried it (expansion, or merely little churn?) and what fixing
churn would buy. The sentence answers the first with the money behind each lever; the scenario answers the
second in annual revenue, so nobody has to compound a monthly figure in their head.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from metrics.cohorts import Aggregates
from metrics.money import fmt, json_amount

DEFAULT_SCENARIO = Decimal("0.2")  # "if churned and contracted MRR were 20% lower"


def pct(ratio: float) -> str:
    """105%, 88.6%: one decimal only where it says something."""
    text = f"{ratio * 100:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def whole(minor: int, currency: str) -> str:
    """Money in whole major units for a sentence: $18,000 rather than $18,000.00."""
    return fmt(minor, currency, whole=True)


def lever_sentence(agg: Aggregates, currency: str) -> str:
    """Which lever moved the trailing-12-month NRR, with the money behind each."""
    nrr = agg.nrr
    if nrr is None:
        return "No customer paid at the start of the window, so there is no cohort to measure yet."
    exp = f"expansion ({whole(agg.expansion, currency)})"
    losses = sorted(
        [
            (agg.churn, f"churn ({whole(agg.churn, currency)})"),
            (agg.contraction, f"contraction ({whole(agg.contraction, currency)})"),
        ],
        key=lambda item: -item[0],
    )
    loss_text = f"{losses[0][1]} and {losses[1][1]}"
    if agg.expansion > agg.churn + agg.contraction:
        return f"NRR {pct(nrr)} is carried by {exp} outweighing {loss_text}."
    if agg.expansion == agg.churn + agg.contraction:
        return f"NRR {pct(nrr)}: {exp} exactly offsets {loss_text}."
    return f"NRR {pct(nrr)} is pulled down by {loss_text}, which {exp} does not make up."


def churn_scenario(agg: Aggregates, currency: str, reduction: Decimal = DEFAULT_SCENARIO) -> dict[str, Any]:
    """NRR and annual revenue kept if churned and contracted MRR were `reduction` lower."""
    lost = agg.churn + agg.contraction
    saved_monthly = int((Decimal(lost) * reduction).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    nrr = None if agg.start <= 0 else (agg.start + agg.expansion - lost + saved_monthly) / agg.start
    annual = saved_monthly * 12
    share = pct(float(reduction))
    if nrr is None:
        sentence = "No cohort, so no churn scenario."
    else:
        sentence = (
            f"If churned and contracted MRR were {share} lower, NRR would be {pct(nrr)} and "
            f"{whole(annual, currency)} a year of revenue would be kept."
        )
    return {
        "reduction": float(reduction),
        "nrr": None if nrr is None else round(nrr, 4),
        "annual_revenue_recovered": json_amount(annual, currency),
        "sentence": sentence,
    }


def board_summary(agg: Aggregates, currency: str, reduction: Decimal = DEFAULT_SCENARIO) -> dict[str, Any]:
    """The `summary` object of `retention metrics --json`, from the trailing-12-month aggregates."""

    def ratio(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "sentence": lever_sentence(agg, currency),
        "nrr": ratio(agg.nrr),
        "grr": ratio(agg.grr),
        "logo_retention": ratio(agg.logo_retention),
        "expansion": json_amount(agg.expansion, currency),
        "churned": json_amount(agg.churn, currency),
        "contraction": json_amount(agg.contraction, currency),
        "scenario": churn_scenario(agg, currency, reduction),
    }
