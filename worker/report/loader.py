"""Gathering the report's payloads from the database: the same functions the JSON commands call.

The trend recomputes the trailing-12-month figures at each month start (store=False, so a report never adds
metric runs); the cohort grid reads the month-start MRR snapshots the rebuild keeps.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from statistics import median
from typing import Any

from sqlalchemy.engine import Engine

from metrics.calendar import day_start, last_month_starts, month_start, utc_now
from metrics.money import json_amount
from worker.backtest import backtest_line, backtest_payload, compute_backtest
from worker.backtest_store import stored_backtest
from worker.metrics_run import as_of_day, compute_metrics
from worker.models import Account
from worker.mrr_queries import snapshots_until
from worker.rates import source_line
from worker.report.cohort_grid import cohort_grid
from worker.report.render import ReportData, render_report
from worker.risk import at_risk

TREND_MONTHS = 12


def trend(
    engine: Engine, account: Account, as_of: datetime, months: int = TREND_MONTHS
) -> list[dict[str, Any]]:
    """T12M NRR / GRR / logo retention at each of the last `months` month starts, and at the as-of day."""
    t1 = as_of_day(as_of)
    days = [d for d in last_month_starts(t1, months) if d < t1] + [t1]
    points = []
    for day in days:
        payload = compute_metrics(engine, account, day_start(day), store=False)
        window = payload["t12m"]
        points.append(
            {
                "as_of": day.isoformat(),
                "nrr": window["nrr"],
                "grr": window["grr"],
                "logo_retention": window["logo_retention"],
            }
        )
    return points


def cohort_rows(engine: Engine, account: Account, until: date) -> list[tuple[str, date, int]]:
    """Month-start snapshots up to `until`: (customer, day, MRR)."""
    with engine.connect() as conn:
        rows = snapshots_until(conn, account.id or 0, until)
    return [(customer, day, mrr) for customer, day, mrr in rows if day.day == 1]


def report_backtest(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    """The backtest the report shows: the newest stored one as of that day (the nightly run's), else one
    computed now (not stored). Its JSON payload, the sentence, and churned MRR per month (major units)."""
    result = stored_backtest(engine, account, as_of) or compute_backtest(engine, account, as_of)
    months = [
        {
            "month": m["month"],
            "caught": json_amount(m["caught"], result.currency),
            "missed": json_amount(m["missed"], result.currency),
            "median_lead_days": median(m["leads"]) if m["leads"] else None,
        }
        for m in result.by_month()
    ]
    return {**backtest_payload(result), "line": backtest_line(result), "by_month": months}


def load_report(
    engine: Engine, account: Account, as_of: datetime, trend_months: int = TREND_MONTHS
) -> ReportData:
    """Every payload the report shows, for one account at `as_of`."""
    t1 = as_of_day(as_of)
    metrics = compute_metrics(engine, account, as_of, store=False)
    grid = cohort_grid(cohort_rows(engine, account, t1), last_month=month_start(t1))
    return ReportData(
        account=account.name,
        metrics=metrics,
        at_risk=at_risk(engine, account, as_of),
        trend=trend(engine, account, as_of, trend_months),
        cohorts=grid.as_json(),
        generated_at=utc_now().strftime("%Y-%m-%d %H:%M UTC"),
        rates_source=rates_source(engine, account),
        backtest=report_backtest(engine, account, as_of),
    )


def rates_source(engine: Engine, account: Account) -> str:
    """Where the report's exchange rates come from (the ECB's, to which day; what was imported)."""
    with engine.connect() as conn:
        return source_line(conn, account.reporting_currency)


def write_report(engine: Engine, account: Account, as_of: datetime, out: Path) -> Path:
    """Renders the report to `out` (parent folders created) and returns the path."""
    html = render_report(load_report(engine, account, as_of))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
