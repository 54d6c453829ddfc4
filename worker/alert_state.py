"""Tables of the alert run: what each customer was told (no spam) and how the last delivery went.

Kept apart from worker/alerts.py so that worker/tables.py can import the schema without the alert run's
imports (worker.accounts imports worker.tables). `status` reads the last delivery through
worker/status_reads.py (without SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime
from sqlmodel import Field, Session, SQLModel

from metrics.calendar import utc_now

PENDING, SENT, RECOVERED_PENDING, CLOSED = "pending", "sent", "recovered_pending", "closed"
DIGEST, WATCH = "digest", "watch"  # who raised an alert: the nightly digest or a same-day watch tick
URGENT = ("cancel_scheduled", "payment_failed")  # the signals a watch tick posts at once for a large account


def urgent_codes(codes: str | Iterable[str]) -> frozenset[str]:
    """The urgent signals among signal codes (or an alert's fingerprint: sorted codes joined by "+")."""
    found = codes.split("+") if isinstance(codes, str) else codes
    return frozenset(code for code in found if code in URGENT)


OPEN_STATES = (PENDING, SENT, RECOVERED_PENDING)
_TZ = DateTime(timezone=True)


class AlertState(SQLModel, table=True):
    """What we told Slack about one customer with one set of signals."""

    __tablename__ = "alert_state"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    customer_id: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(primary_key=True, max_length=255)  # sorted signal codes joined by "+"
    status: str = Field(max_length=20)  # pending | sent | recovered_pending | closed
    via: str = Field(default=DIGEST, max_length=20)  # digest | watch (an urgent same-day alert)
    # MRR at risk when last seen, reporting minor units
    mrr: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    first_seen: datetime = Field(default_factory=utc_now, sa_column=Column(_TZ, nullable=False))
    updated_at: datetime = Field(default_factory=utc_now, sa_column=Column(_TZ, nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(_TZ, nullable=True))
    # a watch alert's Stripe events ({"happened": [[type, created], ...]}), to say when it happened if Slack
    # was down and the message goes out with a later tick
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


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


def settle(session: Session, rows: Sequence[AlertState]) -> None:
    """Slack accepted the message of these rows: a pending alert is now sent, a pending recovery closed."""
    now = utc_now()
    for row in rows:
        row.status = SENT if row.status == PENDING else CLOSED
        row.sent_at = row.updated_at = now
        session.add(row)
