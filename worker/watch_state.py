"""The last same-day watch tick of each account, as `retention status` shows it.

One row per account, overwritten by every tick (skipped ones included: a tick skipped because the nightly
held the lock is worth seeing). Kept apart from worker/watch.py so worker/tables.py can import the schema
without the tick's imports. `status` reads the last tick through worker/status_reads.py (without SQLAlchemy).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime
from sqlmodel import Field, Session, SQLModel

from metrics.calendar import utc_now

_TZ = DateTime(timezone=True)

# outcomes of a tick
QUIET, APPLIED, ALERTED, SKIPPED, FULL, FAILED = (
    "quiet",
    "applied",
    "alerted",
    "skipped",
    "full_sync",
    "failed",
)


class WatchTick(SQLModel, table=True):
    """The account's last watch tick: when, what came of it, what it cost."""

    __tablename__ = "watch_tick"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    at: datetime = Field(default_factory=utc_now, sa_column=Column(_TZ, nullable=False))
    outcome: str = Field(max_length=20)  # quiet | applied | alerted | skipped | full_sync | failed
    ok: bool = True
    trigger: str = Field(default="manual", max_length=20)  # schedule | manual
    seconds: float = 0.0
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    note: str | None = None
    error: str | None = None


def record_tick(session: Session, row: WatchTick) -> None:
    """Replace the account's last tick with this one (the caller commits)."""
    old = session.get(WatchTick, row.account_id)
    if old is not None:
        session.delete(old)
        session.flush()
    session.add(row)
