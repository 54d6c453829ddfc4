"""What `retention status` reports for one account: the last sync, what it stored, what it rejected, the last
nightly run, the last Slack delivery and the last same-day watch tick.

The entry is assembled here rather than in the command so that the alert run's tests and the command read the
same shape (README, `retention status --json`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from integrations.stripe.repository.customers import deleted_counts, object_counts
from integrations.stripe.repository.sync_state import sync_state
from metrics.calendar import utc_datetime
from worker.alert_state import last_alert_status
from worker.models import Account
from worker.runlog import last_nightly
from worker.watch_state import last_tick


def _iso(ts: int | None) -> str | None:
    return None if ts is None else utc_datetime(ts).isoformat()


def account_status(engine: Engine, session: Session, account: Account) -> dict[str, Any]:
    """One entry of `status --json`; `session` is the one the command loaded the account with."""
    assert account.id is not None
    with engine.connect() as conn:
        state = sync_state(conn, account.id)
        counts = object_counts(conn, account.id)
        deleted = deleted_counts(conn, account.id)
    return {
        "name": account.name,
        "last_sync_at": _iso(state.last_sync_at) if state else None,
        "last_sync_ok": state.last_sync_ok if state else None,
        "last_error": state.last_error if state else None,
        "mode": state.mode if state else None,
        "counts": counts,
        "deleted": deleted,
        "rejected": state.rejected if state else [],
        "last_nightly": last_nightly(session, account.id),
        "slack": last_alert_status(session, account.id),
        "last_watch": last_tick(session, account.id),
    }
