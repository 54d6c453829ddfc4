"""A record of each nightly run per account, so `retention status` can show the last one and its steps.

Steps are written as they finish, each in its own transaction, so a run that dies half-way still tells which
step it reached. `status` reads the last run through worker/status_reads.py (without SQLAlchemy).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from metrics.calendar import utc_now
from worker.db import session_scope


class NightlyRun(SQLModel, table=True):
    __tablename__ = "nightly_run"
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    ok: bool | None = None
    trigger: str = Field(default="schedule", max_length=20)  # schedule | manual | enqueue
    task_id: str | None = Field(default=None, max_length=255)
    steps: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = None


def start_run(engine: Engine, account_id: int, trigger: str, task_id: str | None = None) -> int:
    """Opens the run's record before any step, so a run killed mid-way still shows that it started.

    The caller holds the account's lock, so any earlier run still without an end is dead (its worker was
    killed); it is closed as interrupted rather than left looking like it is still going.
    """
    now = utc_now()
    with session_scope(engine) as session:
        for stale in session.exec(
            select(NightlyRun).where(
                NightlyRun.account_id == account_id, col(NightlyRun.finished_at).is_(None)
            )
        ):
            stale.finished_at = now
            stale.ok = False
            stale.error = stale.error or "interrupted: the worker stopped before the run finished"
            session.add(stale)
        run = NightlyRun(account_id=account_id, started_at=now, trigger=trigger, task_id=task_id, steps={})
        session.add(run)
        session.flush()
        assert run.id is not None
        return run.id


def record_step(
    engine: Engine,
    run_id: int,
    step: str,
    ok: bool,
    seconds: float,
    detail: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Adds one step's outcome to the run as it happens (not at the end), for the same reason as start_run."""
    with session_scope(engine) as session:
        run = session.get(NightlyRun, run_id)
        if run is None:  # the account was disconnected during the run; nothing left to record on
            return
        # A new dict, not an in-place change: a JSON column only notices reassignment.
        run.steps = {
            **run.steps,
            step: {"ok": ok, "seconds": round(seconds, 3), "detail": detail or {}, "error": error},
        }
        session.add(run)


def finish_run(engine: Engine, run_id: int, ok: bool, error: str | None = None) -> None:
    with session_scope(engine) as session:
        run = session.get(NightlyRun, run_id)
        if run is None:
            return
        run.finished_at = utc_now()
        run.ok = ok
        run.error = error
        session.add(run)


def runs_of(session: Session, account_id: int) -> list[NightlyRun]:
    """Every recorded run of the account, oldest first."""
    return list(
        session.exec(
            select(NightlyRun)
            .where(NightlyRun.account_id == account_id)
            .order_by(col(NightlyRun.started_at), col(NightlyRun.id))
        )
    )


def record_given_up(engine: Engine, account_id: int, trigger: str, task_id: str | None, error: str) -> None:
    """A run that never started its steps (a task given up on), recorded as failed with the reason.

    Earlier deliveries of the same task that never finished are closed (their processes died); other runs
    are left alone, since this does not hold the account's lock.
    """
    now = utc_now()
    with session_scope(engine) as session:
        if task_id is not None:
            for dead in session.exec(
                select(NightlyRun).where(NightlyRun.task_id == task_id, col(NightlyRun.finished_at).is_(None))
            ):
                dead.finished_at, dead.ok = now, False
                dead.error = dead.error or "interrupted: the worker process died before the run finished"
                session.add(dead)
        session.add(
            NightlyRun(
                account_id=account_id,
                started_at=now,
                finished_at=now,
                ok=False,
                trigger=trigger,
                task_id=task_id,
                steps={},
                error=error,
            )
        )
