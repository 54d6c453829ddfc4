"""The `retention metrics --json` payload (docs/interface.md), assembled from aggregates.

Kept apart from the SQL so the shape, the rounding and where each warning goes are decided in one pure place:
money becomes major units here (metrics.money.json_amount), ratios are rounded to four decimals, an empty
cohort gives null ratios, and a segment's warnings stay inside that segment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from metrics.cohort_sql import GroupKey, MonthMovement
from metrics.cohorts import Aggregates, annualize, fold
from metrics.money import json_amount
from metrics.segments import SizeBands, plan_label
from metrics.warnings import Warning, window_warnings

UNKNOWN_COHORT = "(unknown)"


def ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def window_json(agg: Aggregates, currency: str, label: str, monthly: bool = False) -> dict[str, Any]:
    """W of docs/interface.md; the monthly window adds `nrr_annualized` (monthly NRR ^ 12)."""
    out: dict[str, Any] = {
        "start": json_amount(agg.start, currency),
        "expansion": json_amount(agg.expansion, currency),
        "contraction": json_amount(agg.contraction, currency),
        "churn": json_amount(agg.churn, currency),
        "end": json_amount(agg.end, currency),
        "nrr": ratio(agg.nrr),
        "grr": ratio(agg.grr),
        "logo_retention": ratio(agg.logo_retention),
        "customers": agg.customers,
        "retained": agg.retained,
        "nrr_including_one_time": ratio(agg.nrr_including_one_time),
        "warnings": [w.as_json() for w in window_warnings(agg, label, currency)],
    }
    if monthly:
        out["nrr_annualized"] = ratio(annualize(agg.nrr))
    return out


def segment_aggregates(
    groups: Mapping[GroupKey, Aggregates], bands: SizeBands
) -> dict[str, dict[str, Aggregates]]:
    """Fold the (plan, band, signup month) groups into the three segmentations."""
    labels = bands.labels()
    out: dict[str, dict[str, Aggregates]] = {
        "plan": defaultdict(Aggregates),
        "size": defaultdict(Aggregates),
        "cohort": defaultdict(Aggregates),
    }
    for key, agg in groups.items():
        out["plan"][plan_label(key.plan)] += agg
        out["size"][labels[key.band]] += agg
        out["cohort"][key.cohort or UNKNOWN_COHORT] += agg
    return {name: dict(sorted(parts.items())) for name, parts in out.items()}


def segments_json(
    groups: Mapping[GroupKey, Aggregates], bands: SizeBands, currency: str, window_label: str
) -> dict[str, dict[str, Any]]:
    """Per segmentation, per segment: W with the segment's own warnings; size bands in ascending order."""
    folded = segment_aggregates(groups, bands)
    order = {label: i for i, label in enumerate(bands.labels())}
    folded["size"] = dict(sorted(folded["size"].items(), key=lambda kv: order[kv[0]]))
    return {
        kind: {
            name: window_json(agg, currency, f"{kind} {name} ({window_label})") for name, agg in parts.items()
        }
        for kind, parts in folded.items()
    }


def movements_json(months: Iterable[MonthMovement], currency: str) -> list[dict[str, Any]]:
    """As `retention movements`: churn and contraction negative, so movements sum to the MRR change."""
    return [
        {
            "month": f"{m.month:%Y-%m}",
            "new": json_amount(m.new, currency),
            "expansion": json_amount(m.expansion, currency),
            "contraction": json_amount(-m.contraction, currency),
            "churn": json_amount(-m.churn, currency),
            "reactivation": json_amount(m.reactivation, currency),
            "mrr": json_amount(m.mrr, currency),
        }
        for m in months
    ]


@dataclass(frozen=True)
class MetricsInputs:
    """Everything one payload is assembled from: what the worker reads in one pass over the database.

    One record rather than nine arguments, so the figures of one as-of date travel together from the SQL to
    the shape and cannot be mixed up on the way.
    """

    as_of: date
    currency: str
    mrr: int  # minor units of `currency`
    t12m: Mapping[GroupKey, Aggregates]
    monthly: Mapping[GroupKey, Aggregates]
    bands: SizeBands
    movements: Sequence[MonthMovement]
    extra_warnings: Sequence[Warning]  # about the data (missing exchange rates), not about one figure
    summary: Mapping[str, Any]


def metrics_payload(inputs: MetricsInputs) -> dict[str, Any]:
    """The whole payload. Segments are of the trailing-12-month window; top-level warnings are the headline
    T12M and monthly figures' warnings plus the ones about the data (missing exchange rates)."""
    currency = inputs.currency
    head12, head1 = fold(inputs.t12m.values()), fold(inputs.monthly.values())
    warnings = [
        *window_warnings(head12, "T12M", currency),
        *window_warnings(head1, "monthly", currency),
        *inputs.extra_warnings,
    ]
    return {
        "as_of": inputs.as_of.isoformat(),
        "currency": currency,
        "mrr": json_amount(inputs.mrr, currency),
        "t12m": window_json(head12, currency, "T12M"),
        "monthly": window_json(head1, currency, "monthly", monthly=True),
        "segments": segments_json(inputs.t12m, inputs.bands, currency, "T12M"),
        "movements": movements_json(inputs.movements, currency),
        "warnings": [w.as_json() for w in warnings],
        "summary": dict(inputs.summary),
    }
