"""What `retention status` reports for one account: the last sync, what it stored, what it rejected, the last
nightly run, the last Slack delivery and the last same-day watch tick.

The entry is assembled here rather than in the command so that the alert run's tests and the command read the
same shape (README, `retention status --json`). Every read is a plain DB-API query (metrics/dbapi.py) through
its repository, so `status` starts without importing SQLAlchemy (README: start-up time).
"""

from __future__ import annotations

from typing import Any

from integrations.stripe.repository.counts import deleted_counts, object_counts
from integrations.stripe.repository.sync_state import sync_state
from metrics.calendar import utc_datetime
from metrics.dbapi import Reader
from worker.status_reads import last_alert_status, last_nightly, last_tick


def _iso(ts: int | None) -> str | None:
    return None if ts is None else utc_datetime(ts).isoformat()


def account_status(db: Reader, account_id: int, name: str) -> dict[str, Any]:
    """One entry of `status --json`."""
    state = sync_state(db, account_id)
    return {
        "name": name,
        "last_sync_at": _iso(state.last_sync_at) if state else None,
        "last_sync_ok": state.last_sync_ok if state else None,
        "last_error": state.last_error if state else None,
        "mode": state.mode if state else None,
        "counts": object_counts(db, account_id),
        "deleted": deleted_counts(db, account_id),
        "rejected": state.rejected if state else [],
        "last_nightly": last_nightly(db, account_id),
        "slack": last_alert_status(db, account_id),
        "last_watch": last_tick(db, account_id),
    }
