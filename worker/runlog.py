"""A record of each nightly run per account, so `retention status` can show the last one and its steps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime
from sqlmodel import Field, Session, SQLModel, col, select


class NightlyRun(SQLModel, table=True):
    __tablename__ = "nightly_run"
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    ok: bool | None = None
    trigger: str = Field(default="schedule", max_length=20)  # schedule | manual | enqueue
    task_id: str | None = Field(default=None, max_length=255)
    steps: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = None


def last_nightly(session: Session, account_id: int) -> dict[str, Any] | None:
    """The newest nightly run of the account as `status --json` shows it, or None if it never ran."""
    run = session.exec(
        select(NightlyRun).where(NightlyRun.account_id == account_id).order_by(col(NightlyRun.started_at).desc())
    ).first()
    if run is None:
        return None
    return {
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "ok": run.ok,
        "trigger": run.trigger,
        "task_id": run.task_id,
        "steps": run.steps,
        "error": run.error,
    }
