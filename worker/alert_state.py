"""Tables of the alert run: what each customer was told (no spam) and how the last delivery went.

Kept apart from worker/alerts.py so that worker/tables.py can import the schema without the alert run's
imports (worker.accounts imports worker.tables). `status` reads the last delivery through
worker/status_reads.py (without SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Field, Session, SQLModel

from metrics.calendar import utc_now
from metrics.tables import table_of

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


def settled(status: str) -> str:
    """A row's status once Slack accepted its message: a pending alert is sent, a pending recovery closed."""
    return SENT if status == PENDING else CLOSED


def settle(session: Session, rows: Sequence[AlertState]) -> None:
    """Slack accepted the message of these rows (the watch's, as ORM objects): see `settled`."""
    now = utc_now()
    for row in rows:
        row.status = settled(row.status)
        row.sent_at = row.updated_at = now
        session.add(row)


# -- the digest's rows, read and written as sets (worker/alerts.py) -------------------------------------
# The nightly digest looks at every customer at risk (thousands on a large account): it reads the open rows
# in one query and writes what changed in a few statements, never an ORM object or a query per customer.
AS = table_of(AlertState)


@dataclass
class AlertRow:
    """One alert_state row as the digest changes it; written back by `write_rows`."""

    customer_id: str
    fingerprint: str
    status: str
    via: str
    mrr: int
    updated_at: datetime | None = None
    sent_at: datetime | None = None


def open_alert_rows(conn: Connection, account_id: int) -> dict[str, AlertRow]:
    """Per customer, the alert that is not closed yet: what Slack was (or is about to be) told."""
    query = select(
        AS.c.customer_id, AS.c.fingerprint, AS.c.status, AS.c.via, AS.c.mrr, AS.c.updated_at, AS.c.sent_at
    ).where(AS.c.account_id == account_id, AS.c.status.in_(OPEN_STATES))
    return {r[0]: AlertRow(*r) for r in conn.execute(query)}


_KEY = (
    AS.c.account_id == bindparam("k_account"),
    AS.c.customer_id == bindparam("k_customer"),
    AS.c.fingerprint == bindparam("k_fingerprint"),
)


def _key(account_id: int, row: AlertRow) -> dict[str, Any]:
    return {"k_account": account_id, "k_customer": row.customer_id, "k_fingerprint": row.fingerprint}


def write_rows(
    conn: Connection, account_id: int, changed: Sequence[AlertRow], reopened: Sequence[AlertRow]
) -> None:
    """Store the digest's decisions: `changed` are existing rows (status, via, MRR, last update), `reopened`
    the rows of new or changed alerts, inserted, or updated where the same signals were alerted and closed
    before (their first sighting and a watch's event detail stay)."""
    if changed:
        stmt = (
            update(AS)
            .where(*_KEY)
            .values(
                status=bindparam("v_status"),
                via=bindparam("v_via"),
                mrr=bindparam("v_mrr"),
                updated_at=bindparam("v_updated_at"),
            )
        )
        params = [
            {
                **_key(account_id, r),
                "v_status": r.status,
                "v_via": r.via,
                "v_mrr": r.mrr,
                "v_updated_at": r.updated_at,
            }
            for r in changed
        ]
        conn.execute(stmt, params)
    if reopened:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(AS)
        kept = ("status", "via", "mrr", "updated_at", "sent_at")
        upsert = insert.on_conflict_do_update(
            index_elements=["account_id", "customer_id", "fingerprint"],
            set_={name: insert.excluded[name] for name in kept},
        )
        rows = [
            {
                "account_id": account_id,
                "customer_id": r.customer_id,
                "fingerprint": r.fingerprint,
                "status": r.status,
                "via": r.via,
                "mrr": r.mrr,
                "first_seen": r.updated_at,
                "updated_at": r.updated_at,
                "sent_at": r.sent_at,
                "detail": None,
            }
            for r in reopened
        ]
        conn.execute(upsert, rows)


def settle_rows(conn: Connection, account_id: int, rows: Sequence[AlertRow]) -> None:
    """Slack accepted the message of these digest rows: each is `settled`, sent (or closed) now."""
    if not rows:
        return
    now = utc_now()
    for row in rows:
        row.status = settled(row.status)
        row.sent_at = row.updated_at = now
    stmt = (
        update(AS)
        .where(*_KEY)
        .values(
            status=bindparam("v_status"), sent_at=bindparam("v_sent_at"), updated_at=bindparam("v_sent_at")
        )
    )
    conn.execute(stmt, [{**_key(account_id, r), "v_status": r.status, "v_sent_at": now} for r in rows])
