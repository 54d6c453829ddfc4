"""Tables of the alert run: what each customer was told (no spam) and how the last delivery went.

Kept apart from worker/alerts.py so that worker/tables.py can import the schema without the alert run's
imports (worker.accounts imports worker.tables).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime
from sqlmodel import Field, Session, SQLModel

from metrics.calendar import utc_now

PENDING, SENT, RECOVERED_PENDING, CLOSED = "pending", "sent", "recovered_pending", "closed"
OPEN_STATES = (PENDING, SENT, RECOVERED_PENDING)
_TZ = DateTime(timezone=True)


class AlertState(SQLModel, table=True):
    """What we told Slack about one customer with one set of signals."""

    __tablename__ = "alert_state"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    customer_id: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(primary_key=True, max_length=255)  # sorted signal codes joined by "+"
    status: str = Field(max_length=20)  # pending | sent | recovered_pending | closed
    # MRR at risk when last seen, reporting minor units
    mrr: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    first_seen: datetime = Field(default_factory=utc_now, sa_column=Column(_TZ, nullable=False))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(_TZ, nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(_TZ, nullable=True))


class AlertDelivery(SQLModel, table=True):
    """The last attempt to deliver an account's digest: shown by `retention status`."""

    __tablename__ = "alert_delivery"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    last_attempt_at: datetime | None = Field(default=None, sa_column=Column(_TZ))
    last_ok: bool | None = None
    last_error: str | None = None
    revoked: bool = False
    pending: int = 0
    last_sent_at: datetime | None = Field(default=None, sa_column=Column(_TZ))


def last_alert_status(session: Session, account_id: int) -> dict[str, Any] | None:
    """The last Slack delivery of the account as `retention status --json` may show it, or None."""
    row = session.get(AlertDelivery, account_id)
    if row is None:
        return None
    return {
        "last_attempt_at": row.last_attempt_at.isoformat() if row.last_attempt_at else None,
        "ok": row.last_ok,
        "error": row.last_error,
        "revoked": row.revoked,
        "pending": row.pending,
        "last_sent_at": row.last_sent_at.isoformat() if row.last_sent_at else None,
    }
