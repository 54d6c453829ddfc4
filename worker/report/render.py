"""Rendering the HTML report: plain payload dicts in, one self-contained HTML string out.

Pure on purpose: it takes the payloads the JSON commands print (docs/interface.md), so it is tested without a
database, and the report can never show a figure the CLI would not. Money arrives as major-unit numbers and
ratios as fractions; this module only formats them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from metrics.money import fmt_major
from metrics.warnings import MEANINGS
from worker.report import charts

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class ReportData:
    """Everything the report shows, as the JSON commands give it."""

    account: str
    metrics: dict[str, Any]  # `retention metrics --json`
    at_risk: dict[str, Any]  # `retention at-risk --json`
    trend: list[dict[str, Any]] = field(default_factory=list)  # [{"as_of", "nrr", "grr", "logo_retention"}]
    cohorts: dict[str, Any] = field(default_factory=dict)  # CohortGrid.as_json()
    generated_at: str = ""
    rates_source: str = ""  # e.g. "ECB reference rates to 2026-10-30; imported: none" (worker/rates.py)
    backtest: dict[str, Any] = field(default_factory=dict)  # `retention backtest --json` + "line", "by_month"


def pct(value: float | None, digits: int = 1) -> str:
    """A ratio as a percentage; an empty cohort's null as a dash, never as 0%."""
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def money(value: float | None, currency: str) -> str:
    """A major-unit amount with its currency, in the one money format (metrics/money.py)."""
    return fmt_major(value, currency)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = pct
    env.filters["money"] = money
    env.filters["meaning"] = lambda code: MEANINGS.get(code, "")
    return env


def naive_gap(window: dict[str, Any]) -> float | None:
    """How far counting one-time fees inflates NRR, in percentage points (None when either is unknown)."""
    real, naive = window.get("nrr"), window.get("nrr_including_one_time")
    if real is None or naive is None:
        return None
    return round((naive - real) * 100, 1)


def render_report(data: ReportData, plotly_js: str | None = None) -> str:
    """The whole report as one HTML document (plotly.js inline unless given: tests pass a stub)."""
    metrics = data.metrics
    currency = metrics.get("currency", "usd")
    context = {
        "data": data,
        "m": metrics,
        "currency": currency,
        "t12m": metrics.get("t12m") or {},
        "monthly": metrics.get("monthly") or {},
        "summary": metrics.get("summary") or {},
        "segments": metrics.get("segments") or {},
        "warnings": metrics.get("warnings") or [],
        "risks": (data.at_risk or {}).get("accounts") or [],
        "gap": naive_gap(metrics.get("t12m") or {}),
        "movements_chart": charts.movements_chart(metrics.get("movements") or [], currency),
        "trend_chart": charts.trend_chart(data.trend) if data.trend else "",
        "cohort_chart": charts.cohort_heatmap(data.cohorts) if data.cohorts.get("cohorts") else "",
        "backtest": data.backtest,
        "backtest_chart": (
            charts.backtest_chart(data.backtest["by_month"], currency)
            if data.backtest.get("by_month")
            else ""
        ),
        "plotly_js": charts.plotly_js() if plotly_js is None else plotly_js,
    }
    return _environment().get_template("report.html.j2").render(**context)
