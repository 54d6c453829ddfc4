"""The HTML report's pure parts: figures, charts, escaping and the cohort grid, without a database."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from markupsafe import escape

from worker.report.cohort_grid import cohort_grid
from worker.report.render import ReportData, money, naive_gap, pct, render_report

STUB_JS = "/* plotly stub */"


def window(
    nrr: float | None,
    naive: float | None,
    grr: float | None = 0.9,
    logo: float | None = 0.85,
    customers: int = 40,
) -> dict[str, Any]:
    return {
        "start": 100000.0,
        "expansion": 4000.0,
        "contraction": 3000.0,
        "churn": 7000.0,
        "end": 94000.0,
        "nrr": nrr,
        "grr": grr,
        "logo_retention": logo,
        "customers": customers,
        "retained": 34,
        "nrr_including_one_time": naive,
        "warnings": [],
    }


def payload() -> dict[str, Any]:
    """Worked example 5 of docs/retention.md: real NRR 94%, 108% when one-time fees are counted."""
    monthly = window(0.99, 1.0) | {"nrr_annualized": 0.8864}
    small = window(1.2, 1.2, logo=0.5, customers=4) | {
        "warnings": [{"code": "small_cohort", "message": "4 customers: directional only"}]
    }
    return {
        "as_of": "2026-11-01",
        "currency": "usd",
        "mrr": 94000.0,
        "t12m": window(0.94, 1.08),
        "monthly": monthly,
        "segments": {
            "plan": {"Growth": window(0.94, 1.08), "Scale": small},
            "size": {"1k-10k": window(None, None)},
            "cohort": {"2025-01": window(0.97, 0.97)},
        },
        "movements": [
            {
                "month": "2026-09",
                "new": 1000.0,
                "expansion": 500.0,
                "contraction": -200.0,
                "churn": -800.0,
                "reactivation": 0.0,
                "mrr": 93500.0,
            },
            {
                "month": "2026-10",
                "new": 900.0,
                "expansion": 300.0,
                "contraction": -100.0,
                "churn": -600.0,
                "reactivation": 100.0,
                "mrr": 94000.0,
            },
        ],
        "warnings": [{"code": "expansion_hides_logo_churn", "message": "NRR above 100% while logos fall"}],
        "summary": {"sentence": "Cutting churn by a fifth would lift NRR to 95.4%.", "nrr": 0.94},
    }


def risks() -> dict[str, Any]:
    return {
        "as_of": "2026-11-01",
        "accounts": [
            {
                "customer_id": "cus_1",
                "name": "Evil <script>alert(1)</script> Ltd",
                "mrr": 1250.5,
                "signals": [
                    {"code": "payment_failed", "detail": "invoice in_1 failed 2 times"},
                    {"code": "renewal_soon", "detail": "renews 2026-11-20"},
                ],
                "renewal_date": "2026-11-20",
                "dashboard_url": "https://dashboard.stripe.com/customers/cus_1",
                "score": 0.8,
            }
        ],
    }


def data(**changes: Any) -> ReportData:
    base = ReportData(
        account="Sample",
        metrics=payload(),
        at_risk=risks(),
        trend=[
            {"as_of": "2026-10-01", "nrr": 0.95, "grr": 0.9, "logo_retention": 0.86},
            {"as_of": "2026-11-01", "nrr": 0.94, "grr": 0.9, "logo_retention": 0.85},
        ],
        cohorts={"cohorts": ["2026-09", "2026-10"], "sizes": [3, 1], "values": [[1.0, 0.9], [1.0, None]]},
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_formatting_helpers() -> None:
    assert pct(0.94) == "94.0%"
    assert pct(0.8864, 2) == "88.64%"
    assert pct(None) == "—"
    assert money(1500.0, "usd") == "$1,500.00"
    assert money(5000, "jpy") == "¥5,000"
    assert money(-12.5, "chf") == "-12.50 CHF"
    assert naive_gap({"nrr": 0.94, "nrr_including_one_time": 1.08}) == 14.0
    assert naive_gap({"nrr": None, "nrr_including_one_time": 1.08}) is None


def test_headline_figures_and_the_naive_vs_real_callout() -> None:
    html = render_report(data(), plotly_js=STUB_JS)
    assert re.search(r'id="nrr" data-value="0.94">94.0%<', html)
    assert re.search(r'id="nrr-naive">108.0%<', html)
    assert re.search(r'id="nrr-real">94.0%<', html)
    assert "+14.0 percentage points" in html
    assert re.search(
        r'id="nrr-annualized">88.6%<', html
    )  # monthly 99% is shown annualized, not as 99% a year
    assert re.search(r'id="mrr">\$94,000.00<', html)
    assert "ARR $1,128,000.00" in html
    assert "Cutting churn by a fifth" in html
    assert "expansion_hides_logo_churn" in html


def test_charts_are_divs_sharing_one_inline_library() -> None:
    html = render_report(data(), plotly_js=STUB_JS)
    for div in ("chart-movements", "chart-trend", "chart-cohorts"):
        assert f'id="{div}"' in html
    assert html.count(STUB_JS) == 1
    assert "<script src" not in html.replace(" ", "") and "cdn.plot.ly" not in html
    # the stacked bars: one trace per movement, relative bar mode
    assert '"barmode":"relative"' in html
    for name in ("New", "Expansion", "Contraction", "Churn", "Reactivation"):
        assert f'"name":"{name}"' in html


def test_the_real_library_is_embedded_once_and_offline() -> None:
    html = render_report(data())
    assert len(html) > 3_000_000  # plotly.min.js itself
    assert html.count("plotly.js v") >= 1
    assert not re.search(r"<script[^>]*\bsrc=|<link[^>]*\bhref=", html)  # nothing loaded from elsewhere


def test_segments_at_risk_and_escaping() -> None:
    html = render_report(data(), plotly_js=STUB_JS)
    assert 'data-kind="plan"' in html and 'data-kind="size"' in html and 'data-kind="cohort"' in html
    assert "small_cohort" in html  # a segment's warning stays with its segment
    segment_row = re.search(r"<td>1k-10k</td>.*?</tr>", html, re.S)
    assert segment_row and "—" in segment_row.group(0)  # null ratios are a dash, never 0%
    assert "<script>alert(1)</script>" not in html
    assert "Evil &lt;script&gt;" in html
    assert "At-risk accounts (1)" in html and "payment_failed" in html and "$1,250.50" in html


def test_missing_trend_and_cohorts_leave_their_sections_out() -> None:
    html = render_report(data(trend=[], cohorts={}, at_risk={"accounts": []}), plotly_js=STUB_JS)
    assert 'id="chart-trend"' not in html and 'id="chart-cohorts"' not in html
    assert "No account shows a risk signal." in html


def test_cohort_grid_from_month_start_snapshots() -> None:
    rows = [
        ("a", date(2026, 1, 1), 100),
        ("a", date(2026, 2, 1), 100),
        ("a", date(2026, 3, 1), 0),
        ("b", date(2026, 1, 1), 200),
        ("b", date(2026, 2, 1), 300),
        ("b", date(2026, 3, 1), 300),
        ("c", date(2026, 1, 1), 0),
        ("c", date(2026, 2, 1), 50),
        ("c", date(2026, 3, 1), 50),
        ("b", date(2026, 3, 15), 999_999),  # a nightly snapshot: not a month start, ignored
        ("never", date(2026, 1, 1), 0),
    ]
    grid = cohort_grid(rows)
    assert grid.cohorts == ["2026-01", "2026-02"]
    assert grid.sizes == [2, 1]
    # January cohort started at 300; a month later a stays at 100 and b grows to 300: 400/300; then a churns
    assert grid.values[0] == [1.0, pytest.approx(1.3333), 1.0]
    assert grid.values[1] == [1.0, 1.0, None]


def test_cohort_grid_reaches_the_last_month_even_without_rows() -> None:
    grid = cohort_grid([("a", date(2026, 1, 1), 100)], last_month=date(2026, 3, 1))
    assert grid.values == [[1.0, 0.0, 0.0]]  # no snapshot later: the customer pays nothing
    assert cohort_grid([]).cohorts == []


def test_the_callout_says_which_way_one_time_fees_move_nrr() -> None:
    flattering = render_report(data(), plotly_js=STUB_JS)
    assert "Counting one-time fees would flatter NRR" in flattering
    metrics = payload()
    metrics["t12m"]["nrr_including_one_time"] = 0.9  # more one-time billing at t0 than at t1
    understating = render_report(data(metrics=metrics), plotly_js=STUB_JS)
    assert "Counting one-time fees would understate NRR" in understating
    assert "-4.0 percentage points" in understating


def backtest_data() -> dict[str, Any]:
    return {
        "as_of": "2026-11-01",
        "points": ["2025-08-01", "2026-07-01"],
        "precision": 0.8571,
        "recall": 0.75,
        "recall_count": {"caught": 3, "churners": 4},
        "noise": 0.0625,
        "median_lead_days": 61.0,
        "by_signal": {"payment_failed": {"flags": 7, "hits": 6, "precision": 0.8571}},
        "missed": [
            {"customer_id": "cus_9", "name": "Gone <b>Co</b>", "mrr": 1200.0, "churned_on": "2026-09-01"}
        ],
        "warnings": [{"code": "too_few_churners", "message": "too few churners to judge: 4 in the span"}],
        "line": "86% of 7 alerts were followed by churn or contraction within 120 days",
        "by_month": [
            {"month": "2026-03", "caught": 500.0, "missed": 0.0, "median_lead_days": 61},
            {"month": "2026-09", "caught": 0.0, "missed": 1200.0, "median_lead_days": None},
        ],
    }


def test_the_section_on_how_good_the_alerts_are() -> None:
    html = render_report(data(backtest=backtest_data()), plotly_js=STUB_JS)
    assert "How good are these alerts" in html
    assert re.search(r'id="bt-precision">86%<', html) and re.search(r'id="bt-recall">75%<', html)
    assert re.search(r'id="bt-noise">6%<', html) and re.search(r'id="bt-lead">61 days<', html)
    assert "3 of 4 churners" in html and "too few churners to judge" in html
    assert 'id="chart-backtest"' in html and '"barmode":"stack"' in html and "lead 61 d" in html
    missed = re.search(r'id="bt-missed"[^>]*>.*?</table>', html, re.S)
    assert missed and "Gone &lt;b&gt;Co&lt;/b&gt;" in missed.group(0) and "$1,200.00" in missed.group(0)
    assert "2026-09-01" in missed.group(0)
    # no backtest (an account never judged): no section
    assert "How good are these alerts" not in render_report(data(), plotly_js=STUB_JS)


def test_warnings_are_explained_in_words_where_no_tooltip_shows() -> None:
    """On a phone or on paper a chip's tooltip is out of reach: the meaning of each kind is written out."""
    from metrics.warnings import MEANINGS

    html = render_report(data(), plotly_js=STUB_JS)
    meanings = html[html.index('id="warning-meanings"') : html.index('<section id="at-risk">')]
    assert "small cohort" in meanings and escape(MEANINGS["small_cohort"]) in meanings
    assert escape(MEANINGS["expansion_hides_logo_churn"]) in html  # the headline warning's meaning
