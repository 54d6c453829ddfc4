"""Compute an account's retention metrics for one as-of date, and keep each run for trends.

The database does the per-customer work (metrics/cohort_sql.py); this module picks the windows, makes sure the
snapshots they read exist, assembles the payload of `retention metrics --json` and stores it as a MetricRun
tagged with the definitions' version. A rerun for the same day and version replaces that run (the nightly job
may run twice); a run under another version is kept, so a definition change never rewrites history silently.

A stored run also records the ledger's generation it was computed at (the account's verdict epoch, see
worker/derived_store.py) and its basis (reporting currency, size bands): `current_metrics` hands it back
while both are still current, so the report, minutes after the nightly metrics step, does not compute the
same payload again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from metrics.calendar import day_start, month_starts_between, utc_now
from metrics.cohort_sql import MonthMovement, first_snapshot_day, month_movements, total_mrr, window_groups
from metrics.cohorts import fold, windows_for
from metrics.payload import MetricsInputs, metrics_payload, ratio
from metrics.runs import DEFINITIONS_VERSION, MetricRun
from metrics.segments import DEFAULT_SIZE_BANDS, SizeBands
from metrics.summary import board_summary
from metrics.tables import table_of
from metrics.warnings import Warning
from worker import derived_store, mrr_queries, risk_store
from worker.derived_store import holds_epoch
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
    account_id = account.id or 0
    with engine.connect() as conn:
        since = risk_store.epoch(conn, account_id)  # before anything is read: the generation stored with it
    ensure_snapshots(engine, account, sorted({t12m.t0, monthly.t0, t1}))
    edges = bands.minor_edges(currency)
    with engine.connect() as conn:
        first = first_snapshot_day(conn, account_id)
    movements = kept_movements(engine, account_id, month_starts_between(first, t1) if first else [])
    with engine.connect() as conn:
        groups12 = window_groups(conn, account_id, t12m, edges)
        groups1 = window_groups(conn, account_id, monthly, edges)
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
        store_run(engine, account, t1, payload, since=since, basis=run_basis(currency, bands))
    return payload


_MOVEMENT_FIELDS = ("new", "expansion", "contraction", "churn", "reactivation", "mrr")


def kept_movements(engine: Engine, account_id: int, months: Sequence[date]) -> list[MonthMovement]:
    """`month_movements` over these month starts, read back while the ledger's generation is the one they
    were computed at (worker/derived_store.py) and the month starts are the same.

    They read only the month-start snapshots, which nothing but a rebuild that moves the generation rewrites:
    a night with nothing changed in Stripe (or a second run of a day) would otherwise walk 36 month starts of
    every customer again for the same figures (2 s of an unchanged night at 100,000 customers)."""
    key = f"{derived_store.FORMAT}:{DEFINITIONS_VERSION}"
    wanted = [m.isoformat() for m in months]
    with engine.connect() as conn:
        since, stored = derived_store.figures(conn, account_id, derived_store.MOVEMENTS)
        kept = stored.get(key)
        if kept is not None and kept["months"] == wanted:
            return [
                MonthMovement(date.fromisoformat(m), *(int(v) for v in values))
                for m, values in zip(wanted, kept["values"], strict=True)
            ]
        found = month_movements(conn, account_id, months)
    values = [[getattr(m, name) for name in _MOVEMENT_FIELDS] for m in found]
    derived_store.store_figures(
        engine, account_id, derived_store.MOVEMENTS, since, {key: {"months": wanted, "values": values}}
    )
    return found


def run_basis(currency: str, bands: SizeBands) -> str:
    """What a payload depends on besides the ledger, the day and the definitions: the reporting currency
    (amounts' formatting, band edges in minor units) and the size bands (`--size-bands`, the environment)."""
    return risk_store.basis_key(currency, tuple(str(edge) for edge in bands.edges))


def current_metrics(
    engine: Engine, account: Account, as_of: datetime, bands: SizeBands | None = None
) -> dict[str, Any] | None:
    """The stored payload of `as_of`'s day when computing it now would give the same, else None.

    That is a run under the current definitions and basis, computed at the account's current epoch (no
    rebuild changed a customer since: the epoch is compared in the same statement), whose movements start
    where they would start now: the first month comes from the earliest stored snapshot day, which a day
    filled later for another reader (the trend's windows) can move earlier while the ledger stays the same.
    """
    bands = bands or size_bands()
    currency = account.reporting_currency.lower()
    t1 = as_of_day(as_of)
    account_id = account.id or 0
    runs = table_of(MetricRun)
    now = func.coalesce(
        select(risk_store.VE.c.epoch).where(risk_store.VE.c.account_id == account_id).scalar_subquery(), 0
    )
    query = (
        select(runs.c.payload)
        .where(
            runs.c.account_id == account_id,
            runs.c.as_of == t1,
            runs.c.definitions_version == DEFINITIONS_VERSION,
            runs.c.basis == run_basis(currency, bands),
            runs.c.epoch == now,
        )
        .order_by(runs.c.computed_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        payload: dict[str, Any] | None = conn.execute(query).scalar()
        if payload is None:
            return None
        first = first_snapshot_day(conn, account_id)
    months = [f"{m:%Y-%m}" for m in (month_starts_between(first, t1) if first else [])]
    if [m.get("month") for m in payload.get("movements") or []] != months:
        return None
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


def store_run(
    engine: Engine,
    account: Account,
    as_of: date,
    payload: dict[str, Any],
    since: int | None = None,
    basis: str | None = None,
) -> None:
    """Replace the run of the same day under the same definitions; keep runs under other versions.

    `since` is the epoch read before the payload's rows were: recorded with the run unless it moved
    meanwhile (a rebuild committed while the payload was computed: then the run is kept without one, and no
    reader takes it for current). The run is written first, then the epoch read (worker/derived_store.py
    holds_epoch: on SQLite the write holds the database's lock, on PostgreSQL the epoch row is locked)."""
    runs = table_of(MetricRun)
    same = and_(
        runs.c.account_id == (account.id or 0),
        runs.c.as_of == as_of,
        runs.c.definitions_version == DEFINITIONS_VERSION,
    )
    with engine.begin() as conn:
        conn.execute(delete(runs).where(same))
        conn.execute(
            insert(runs).values(
                account_id=account.id or 0,
                as_of=as_of,
                computed_at=utc_now(),
                definitions_version=DEFINITIONS_VERSION,
                payload=payload,
                epoch=since,
                basis=basis,
            )
        )
        if since is not None and not holds_epoch(conn, account.id or 0, since):
            conn.execute(update(runs).where(same).values(epoch=None))


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
