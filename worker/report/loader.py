"""Gathering the report's payloads from the database: the same functions the JSON commands call.

The trend recomputes the trailing-12-month figures at each month start (the T12M window only, never stored as
a metric run); the cohort grid sums the month-start MRR snapshots the rebuild keeps, in the database.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from statistics import median
from typing import Any

from sqlalchemy.engine import Engine

from metrics.calendar import last_month_starts, month_start, utc_now
from metrics.cohorts import windows_for
from metrics.money import json_amount
from worker.backtest import backtest_line, backtest_payload, compute_backtest
from worker.backtest_store import stored_backtest
from worker.metrics_run import as_of_day, compute_metrics, t12m_ratios
from worker.models import Account
from worker.mrr_queries import cohort_sums, ensure_snapshots
from worker.rates import source_line
from worker.report.cohort_grid import CohortSums, grid_of
from worker.report.render import ReportData, render_report
from worker.risk import at_risk

TREND_MONTHS = 12


def trend(
    engine: Engine, account: Account, as_of: datetime, months: int = TREND_MONTHS
) -> list[dict[str, Any]]:
    """T12M NRR / GRR / logo retention at each of the last `months` month starts, and at the as-of day."""
    t1 = as_of_day(as_of)
    days = [d for d in last_month_starts(t1, months) if d < t1] + [t1]
    # every snapshot day the points read, computed in one pass over the ledger rather than one pass per point
    ensure_snapshots(
        engine, account, sorted({d for day in days for w in windows_for(day) for d in (w.t0, w.t1)})
    )
    points = []
    for day in days:
        points.append({"as_of": day.isoformat(), **t12m_ratios(engine, account, day)})
    return points


def cohort_totals(engine: Engine, account: Account, last_month: date) -> CohortSums:
    """The cohort grid's sums up to `last_month`, aggregated by the database."""
    with engine.connect() as conn:
        sizes, kept = cohort_sums(conn, account.id or 0, last_month)
    return CohortSums({f: (n, mrr) for f, n, mrr in sizes}, {(f, d): mrr for f, d, mrr in kept})


def report_backtest(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    """The backtest the report shows: the newest stored one as of that day (the nightly run's), else one
    computed now from the customers' kept codes (the result itself not stored). Its JSON payload, the
    sentence, and churned MRR per month (major units)."""
    result = stored_backtest(engine, account, as_of) or compute_backtest(engine, account, as_of, reuse=True)
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
    last_month = month_start(t1)
    grid = grid_of(cohort_totals(engine, account, last_month), last_month)
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
