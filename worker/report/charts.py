"""The report's charts: plotly figures rendered to <div>s that share one inline copy of plotly.js.

Each chart gets a fixed div id (the report is diffable and the browser test can find it) and no plotly.js of
its own: the page embeds the library once, so the file works offline and stays one file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

MOVEMENT_COLOURS = {
    "new": "#2e7d32",
    "reactivation": "#66bb6a",
    "expansion": "#1565c0",
    "contraction": "#ef6c00",
    "churn": "#c62828",
}
CONFIG = {"displaylogo": False, "displayModeBar": False, "responsive": True}


def plotly_js() -> str:
    """The plotly.js library text, embedded once per report."""
    return str(get_plotlyjs())


def _div(fig: go.Figure, div_id: str, height: int = 380) -> str:
    fig.update_layout(margin={"l": 60, "r": 20, "t": 40, "b": 50}, template="plotly_white", height=height)
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG))


def movements_chart(movements: Sequence[dict[str, Any]], currency: str) -> str:
    """Stacked monthly MRR movements (gains up, losses down) with the MRR line on a second axis."""
    months = [m["month"] for m in movements]
    fig = go.Figure()
    for key, colour in MOVEMENT_COLOURS.items():
        fig.add_bar(
            x=months, y=[m.get(key, 0) for m in movements], name=key.capitalize(), marker_color=colour
        )
    fig.add_scatter(
        x=months,
        y=[m.get("mrr", 0) for m in movements],
        name="MRR",
        yaxis="y2",
        mode="lines+markers",
        line={"color": "#37474f"},
    )
    fig.update_layout(
        barmode="relative",
        title=f"MRR movements by month ({currency.upper()})",
        xaxis={"type": "category"},
        yaxis={"title": "movement"},
        yaxis2={"title": "MRR", "overlaying": "y", "side": "right"},
        legend={"orientation": "h", "y": -0.2},
    )
    return _div(fig, "chart-movements")


def trend_chart(trend: Sequence[dict[str, Any]]) -> str:
    """T12M NRR, GRR and logo retention at each month end (ratios shown as percentages)."""
    days = [t["as_of"] for t in trend]
    fig = go.Figure()
    for key, label in (("nrr", "NRR"), ("grr", "GRR"), ("logo_retention", "Logo retention")):
        fig.add_scatter(x=days, y=[t.get(key) for t in trend], name=label, mode="lines+markers")
    fig.update_layout(
        title="Trailing-12-month retention over time",
        yaxis={"tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.2},
    )
    return _div(fig, "chart-trend")


def cohort_heatmap(grid: dict[str, Any]) -> str:
    """Revenue retention by signup cohort (rows) and months since signup (columns)."""
    cohorts = [f"{c} (n={n})" for c, n in zip(grid["cohorts"], grid["sizes"], strict=True)]
    values = grid["values"]
    width = len(values[0]) if values else 0
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=list(range(width)),
            y=cohorts,
            colorscale="RdYlGn",
            zmin=0.5,
            zmax=1.2,
            hovertemplate="%{y}<br>month %{x}: %{z:.0%}<extra></extra>",
            colorbar={"tickformat": ".0%"},
        )
    )
    fig.update_layout(
        title="Revenue retention by signup cohort",
        xaxis={"title": "months since signup", "dtick": 1},
        yaxis={"autorange": "reversed"},
    )
    return _div(fig, "chart-cohorts", height=max(380, 18 * len(cohorts) + 120))


def backtest_chart(by_month: Sequence[dict[str, Any]], currency: str) -> str:
    """Churned MRR by month of churn: caught 28+ days ahead (with the caught churners' median lead time
    over the bar) stacked on missed."""
    months = [m["month"] for m in by_month]
    leads = [
        f"lead {m['median_lead_days']:.0f} d" if m["median_lead_days"] is not None else "" for m in by_month
    ]
    fig = go.Figure()
    fig.add_bar(
        x=months,
        y=[m["caught"] for m in by_month],
        name="Caught 28+ days ahead",
        marker_color="#2e7d32",
        text=leads,
        textposition="outside",
    )
    fig.add_bar(x=months, y=[m["missed"] for m in by_month], name="Missed", marker_color="#c62828")
    fig.update_layout(
        barmode="stack",
        title=f"Churned MRR by month, caught vs missed ({currency.upper()})",
        xaxis={"type": "category"},
        yaxis={"title": "churned MRR"},
        legend={"orientation": "h", "y": -0.2},
    )
    return _div(fig, "chart-backtest")
