"""Warnings that travel with a retention figure (docs/warnings.md).

A ratio without its caveat misleads: a 120% NRR from twelve customers, or carried by one account, or hiding a
fifth of the logos leaving, is not the number a board thinks it is. Each figure carries its own warnings, so a
segment's caveat stays with the segment and the headline's with the headline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metrics.cohorts import Aggregates
from metrics.money import fmt

SMALL_COHORT = 30  # fewer customers than this: directional only
LOGO_FLOOR = 0.9  # NRR above 1 with logo retention below this hides logo churn

# What each kind of warning means, for a founder who has not read docs/warnings.md (the terminal shows it
# beside a grouped kind, the report beside each warning).
MEANINGS: dict[str, str] = {
    "small_cohort": (
        f"fewer than {SMALL_COHORT} customers were paying at the window's start, so one customer can swing "
        "the ratio; "
        "read it as a direction, not a result"
    ),
    "expansion_hides_logo_churn": (
        "NRR is above 100% only because the customers who stayed pay more, while many customers left"
    ),
    "expansion_concentration": (
        "more than half of the expansion comes from a single customer; without it NRR would be lower"
    ),
    "before_first_invoice": "the date comes before any subscription was billed: there is nothing to measure",
    "missing_rate": (
        "some revenue is in a currency with no exchange rate for its dates and is left out of the totals; "
        "add rates with `retention rates import`"
    ),
}


@dataclass(frozen=True)
class Warning:
    code: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


def _pct(ratio: float) -> str:
    text = f"{ratio * 100:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def small_cohort(agg: Aggregates, label: str) -> Warning | None:
    if agg.customers >= SMALL_COHORT:
        return None
    if agg.customers == 0:
        return Warning("small_cohort", f"{label}: no customer paid at the window's start; no ratio to report")
    return Warning(
        "small_cohort",
        f"{label}: cohort of {agg.customers} customers (fewer than {SMALL_COHORT}): directional only",
    )


def expansion_hides_logo_churn(agg: Aggregates, label: str) -> Warning | None:
    nrr, logos = agg.nrr, agg.logo_retention
    if nrr is None or logos is None or not (nrr > 1 and logos < LOGO_FLOOR):
        return None
    lost = agg.customers - agg.retained
    return Warning(
        "expansion_hides_logo_churn",
        f"{label}: expansion hides logo churn: NRR {_pct(nrr)} while {lost} of {agg.customers} customers "
        f"left (logo retention {_pct(logos)})",
    )


def expansion_concentration(agg: Aggregates, label: str, currency: str) -> Warning | None:
    # more than half, compared exactly in integers
    if agg.expansion <= 0 or agg.max_expansion * 2 <= agg.expansion:
        return None
    share = agg.max_expansion / agg.expansion
    return Warning(
        "expansion_concentration",
        f"{label}: one customer makes up {_pct(share)} of expansion "
        f"({fmt(agg.max_expansion, currency)} of {fmt(agg.expansion, currency)})",
    )


def window_warnings(agg: Aggregates, label: str, currency: str) -> list[Warning]:
    """Every warning that applies to one figure, in a stable order."""
    found = (
        small_cohort(agg, label),
        expansion_hides_logo_churn(agg, label),
        expansion_concentration(agg, label, currency),
    )
    return [w for w in found if w is not None]
