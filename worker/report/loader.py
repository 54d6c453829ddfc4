"""Gathering the report's payloads from the database: the same functions the JSON commands call.

The trend recomputes the trailing-12-month figures at each month start (the T12M window only, never stored as
a metric run); the cohort grid sums the month-start MRR snapshots the rebuild keeps, in the database.

What the report derives from the ledger is reused while the ledger stays the same (docs/at-risk.md, Derived
figures): the metrics payload is the nightly run's when that run is current (worker/metrics_run.py
current_metrics), the trend's last point is that payload's T12M ratios, and the trend's month starts and the
cohort grid's sums are stored per epoch (worker/derived_store.py). A night on which no customer changed
computes none of them again; `reuse=False` computes (and stores) nothing but afresh.
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
from metrics.runs import DEFINITIONS_VERSION
from worker import derived_store
from worker.backtest import backtest_line, backtest_payload, compute_backtest
from worker.backtest_store import stored_backtest
from worker.metrics_run import as_of_day, compute_metrics, current_metrics, t12m_ratios
from worker.models import Account
from worker.mrr_queries import cohort_months, cohort_sums, ensure_snapshots
from worker.rates import source_line
from worker.report.cohort_grid import CohortSums, grid_of
from worker.report.render import ReportData, render_report
from worker.risk import at_risk

TREND_MONTHS = 12
RATIOS = ("nrr", "grr", "logo_retention")


def _trend_key(day: date) -> str:
    """A trend point depends on the ledger (the epoch), its day and the definitions of the T12M window."""
    return f"{derived_store.FORMAT}:{DEFINITIONS_VERSION}:{day.isoformat()}"


def trend(
    engine: Engine,
    account: Account,
    as_of: datetime,
    months: int = TREND_MONTHS,
    reuse: bool = True,
    as_of_ratios: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """T12M NRR / GRR / logo retention at each of the last `months` month starts, and at the as-of day.

    `as_of_ratios`: the as-of day's ratios when known already (the metrics payload's `t12m`, which the same
    window gives). With `reuse`, points stored at the current epoch are read back and those computed are
    stored; only the computed points' snapshot days are made sure of."""
    t1 = as_of_day(as_of)
    account_id = account.id or 0
    days = [d for d in last_month_starts(t1, months) if d < t1] + [t1]
    with engine.connect() as conn:
        since, stored = derived_store.figures(conn, account_id, derived_store.TREND) if reuse else (0, {})
    found: dict[date, dict[str, Any]] = {d: stored[_trend_key(d)] for d in days if _trend_key(d) in stored}
    if as_of_ratios is not None:
        found[t1] = {k: as_of_ratios[k] for k in RATIOS}
    missing = [d for d in days if d not in found]
    # the snapshot days the missing points read, made in one pass over the ledger rather than one per point
    ensure_snapshots(
        engine, account, sorted({d for day in missing for w in windows_for(day) for d in (w.t0, w.t1)})
    )
    for day in missing:
        found[day] = t12m_ratios(engine, account, day)
    if reuse:
        derived_store.store_figures(
            engine,
            account_id,
            derived_store.TREND,
            since,
            {_trend_key(d): found[d] for d in missing},
            keep=[_trend_key(d) for d in days],
        )
    return [{"as_of": day.isoformat(), **{k: found[day][k] for k in RATIOS}} for day in days]


def cohort_totals(engine: Engine, account: Account, last_month: date, reuse: bool = True) -> CohortSums:
    """The cohort grid's sums up to `last_month`, aggregated by the database.

    With `reuse`, the sums stored at the current epoch for the same month starts are read back (the stored
    days matter too: a report for a day after the rebuild's may find a month start not computed yet)."""
    account_id = account.id or 0
    key = f"{derived_store.FORMAT}:{last_month.isoformat()}"
    with engine.connect() as conn:
        since, stored = derived_store.figures(conn, account_id, derived_store.COHORTS) if reuse else (0, {})
        months = cohort_months(conn, account_id, last_month)
        kept = stored.get(key)
        if kept is not None and kept["months"] == [m.isoformat() for m in months]:
            sizes = [(date.fromisoformat(f), int(n), int(mrr)) for f, n, mrr in kept["sizes"]]
            totals = [(date.fromisoformat(f), date.fromisoformat(d), int(mrr)) for f, d, mrr in kept["kept"]]
        else:
            sizes, totals = cohort_sums(conn, account_id, last_month, months)
            kept = None
    if kept is None and reuse:
        value = {
            "months": [m.isoformat() for m in months],
            "sizes": [[f.isoformat(), n, mrr] for f, n, mrr in sizes],
            "kept": [[f.isoformat(), d.isoformat(), mrr] for f, d, mrr in totals],
        }
        derived_store.store_figures(engine, account_id, derived_store.COHORTS, since, {key: value})
    return CohortSums({f: (n, mrr) for f, n, mrr in sizes}, {(f, d): mrr for f, d, mrr in totals})


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
    engine: Engine,
    account: Account,
    as_of: datetime,
    trend_months: int = TREND_MONTHS,
    reuse: bool = True,
) -> ReportData:
    """Every payload the report shows, for one account at `as_of` (`reuse`: see the module docstring)."""
    t1 = as_of_day(as_of)
    metrics = (current_metrics(engine, account, as_of) if reuse else None) or compute_metrics(
        engine, account, as_of, store=False
    )
    last_month = month_start(t1)
    grid = grid_of(cohort_totals(engine, account, last_month, reuse), last_month)
    return ReportData(
        account=account.name,
        metrics=metrics,
        at_risk=at_risk(engine, account, as_of),
        trend=trend(engine, account, as_of, trend_months, reuse, as_of_ratios=metrics["t12m"]),
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
