"""Compute an account's retention metrics for one as-of date, and keep each run for trends.

The database does the per-customer work (metrics/cohort_sql.py); this module picks the windows, makes sure the
snapshots they read exist, assembles the payload of `retention metrics --json` and stores it as a MetricRun
tagged with the definitions' version. A rerun for the same day and version replaces that run (the nightly job
may run twice); a run under another version is kept, so a definition change never rewrites history silently.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from metrics.calendar import day_start, month_starts_between, utc_now
from metrics.cohort_sql import first_snapshot_day, month_movements, total_mrr, window_groups
from metrics.cohorts import fold, windows_for
from metrics.payload import MetricsInputs, metrics_payload, ratio
from metrics.runs import DEFINITIONS_VERSION, MetricRun
from metrics.segments import DEFAULT_SIZE_BANDS, SizeBands
from metrics.summary import board_summary
from metrics.warnings import Warning
from worker import mrr_queries
from worker.models import Account
from worker.rebuild import ensure_ledger, ensure_snapshots

SIZE_BANDS_ENV = "RETENTION_SIZE_BANDS"  # e.g. "100,1000,10000" (major units a month)


def size_bands(edges: str | None = None) -> SizeBands:
    """`edges` as given (--size-bands), else RETENTION_SIZE_BANDS, else the defaults of docs/retention.md.

    Raises ValueError for edges that are not numbers: a command refuses them, the nightly run fails on them.
    """
    if edges:
        return SizeBands.parse(edges)
    text = os.environ.get(SIZE_BANDS_ENV, "").strip()
    return SizeBands.parse(text) if text else DEFAULT_SIZE_BANDS


def as_of_day(as_of: datetime) -> date:
    """t1: the as-of instant's UTC day; its 00:00 UTC is where the day's snapshot is taken."""
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    return as_of.astimezone(UTC).date()


def missing_rate_warnings(conn: Connection, account: Account, days: list[date]) -> list[Warning]:
    """Engineer C's `missing_rate` warnings at each day the figures read, each message once."""
    seen: dict[str, Warning] = {}
    for found in mrr_queries.missing_rate_warnings_at(conn, account.id or 0, [day_start(d) for d in days]):
        for w in found:
            seen.setdefault(w["message"], Warning(w["code"], w["message"]))
    return list(seen.values())


def compute_metrics(
    engine: Engine, account: Account, as_of: datetime, store: bool = True, bands: SizeBands | None = None
) -> dict[str, Any]:
    """The `retention metrics --json` payload for the account at `as_of`; stored as a MetricRun if `store`."""
    bands = bands or size_bands()
    currency = account.reporting_currency.lower()
    t1 = as_of_day(as_of)
    t12m, monthly = windows_for(t1)
    ensure_snapshots(engine, account, sorted({t12m.t0, monthly.t0, t1}))
    account_id = account.id or 0
    edges = bands.minor_edges(currency)
    with engine.connect() as conn:
        groups12 = window_groups(conn, account_id, t12m, edges)
        groups1 = window_groups(conn, account_id, monthly, edges)
        first = first_snapshot_day(conn, account_id)
        months = month_starts_between(first, t1) if first else []
        movements = month_movements(conn, account_id, months)
        data_warnings = missing_rate_warnings(conn, account, [t1, monthly.t0, t12m.t0])
        inputs = MetricsInputs(
            as_of=t1,
            currency=currency,
            mrr=total_mrr(conn, account_id, t1),
            t12m=groups12,
            monthly=groups1,
            bands=bands,
            movements=movements,
            extra_warnings=data_warnings,
            summary=board_summary(fold(groups12.values()), currency),
        )
    payload = metrics_payload(inputs)
    if store:
        store_run(engine, account, t1, payload)
    return payload


def t12m_ratios(engine: Engine, account: Account, day: date) -> dict[str, float | None]:
    """NRR, GRR and logo retention of the trailing 12 months ending at `day`, as compute_metrics gives them
    (payload["t12m"]), from the one aggregate query they need: the report's trend asks for 13 of them.
    The window's snapshot days must be there already (ensure_snapshots)."""
    t12m, _ = windows_for(day)
    edges = size_bands().minor_edges(account.reporting_currency.lower())
    with engine.connect() as conn:
        head = fold(window_groups(conn, account.id or 0, t12m, edges).values())
    return {"nrr": ratio(head.nrr), "grr": ratio(head.grr), "logo_retention": ratio(head.logo_retention)}


def metrics_of_accounts(
    engine: Engine, accounts: Sequence[Account], as_of: datetime, bands: SizeBands
) -> list[dict[str, Any]]:
    """`retention metrics`: each account's payload, stored like the nightly run's.

    An account connected but never rebuilt gets its ledger first, so the command answers on a fresh install.
    """
    payloads = []
    for account in accounts:
        ensure_ledger(engine, account)
        payloads.append(compute_metrics(engine, account, as_of, store=True, bands=bands))
    return payloads


def store_run(engine: Engine, account: Account, as_of: date, payload: dict[str, Any]) -> None:
    """Replace the run of the same day under the same definitions; keep runs under other versions."""
    with Session(engine) as session:
        session.execute(
            delete(MetricRun).where(
                col(MetricRun.account_id) == account.id,
                col(MetricRun.as_of) == as_of,
                col(MetricRun.definitions_version) == DEFINITIONS_VERSION,
            )
        )
        session.add(
            MetricRun(
                account_id=account.id or 0,
                as_of=as_of,
                computed_at=utc_now(),
                definitions_version=DEFINITIONS_VERSION,
                payload=payload,
            )
        )
        session.commit()


def metric_history(engine: Engine, account: Account) -> list[dict[str, Any]]:
    """Stored runs, oldest first, each with its definitions' version beside the figures (for trend charts)."""
    with Session(engine) as session:
        runs = session.exec(
            select(MetricRun)
            .where(MetricRun.account_id == account.id)
            .order_by(col(MetricRun.as_of), col(MetricRun.computed_at))
        ).all()
    return [
        {
            "as_of": run.as_of.isoformat(),
            "computed_at": run.computed_at.isoformat(),
            "definitions_version": run.definitions_version,
            **{key: run.payload.get(key) for key in ("currency", "mrr", "t12m", "monthly", "summary")},
        }
        for run in runs
    ]
