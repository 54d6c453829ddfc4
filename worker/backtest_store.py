"""Stored backtests: one row per account and as-of day, history kept, so the track record over time can be
shown and every reader (at-risk, the Slack digest, the report) reuses the night's figures instead of
recomputing twelve points of history.

Kept apart from worker/backtest.py (which reads the history through worker/risk.py) so that worker/risk.py
can read track records without an import cycle, and worker/tables.py can import the schema alone.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from metrics.at_risk import TrackRecord
from metrics.backtest import BacktestResult, from_record, to_record
from metrics.calendar import utc_now
from worker.db import session_scope
from worker.models import Account

MIN_CASES = 5  # a signal's track record is shown from this many past flags on


class BacktestRun(SQLModel, table=True):
    """The backtest of one account as of one day (docs/at-risk.md), as computed by the nightly run."""

    __tablename__ = "backtest_run"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    as_of: date = Field(primary_key=True)
    computed_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def save_backtest(engine: Engine, account: Account, result: BacktestResult) -> None:
    """Store (or replace) the account's backtest of that as-of day; earlier days are kept."""
    with session_scope(engine) as session:
        row = session.get(BacktestRun, (account.id, result.as_of)) or BacktestRun(
            account_id=account.id or 0, as_of=result.as_of
        )
        row.figures, row.computed_at = to_record(result), utc_now()
        session.add(row)


def stored_backtest(engine: Engine, account: Account, as_of: datetime | date) -> BacktestResult | None:
    """The newest stored backtest as of that day or earlier (a replay never sees a later one)."""
    day = as_of.date() if isinstance(as_of, datetime) else as_of
    with Session(engine) as session:
        row = session.exec(
            select(BacktestRun)
            .where(BacktestRun.account_id == account.id, col(BacktestRun.as_of) <= day)
            .order_by(col(BacktestRun.as_of).desc())
        ).first()
        return from_record(row.figures) if row is not None else None


def backtest_history(engine: Engine, account: Account) -> list[BacktestResult]:
    """Every stored backtest of the account, oldest first: how good the alerts were, night after night."""
    with Session(engine) as session:
        rows = session.exec(
            select(BacktestRun).where(BacktestRun.account_id == account.id).order_by(col(BacktestRun.as_of))
        )
        return [from_record(r.figures) for r in rows]


def track_records(result: BacktestResult | None) -> dict[str, TrackRecord]:
    """Per signal, its flags and hits, for signals with at least MIN_CASES past flags."""
    if result is None:
        return {}
    return {
        code: TrackRecord(flags, hits)
        for code, (flags, hits) in result.by_signal.items()
        if flags >= MIN_CASES
    }


def stored_track_records(engine: Engine, account: Account, as_of: datetime) -> dict[str, TrackRecord]:
    return track_records(stored_backtest(engine, account, as_of))
