"""Reads a sync makes of what earlier syncs stored: its own bookkeeping row, and the customers' creation
times that split the invoice history into ranges of equal work.

The sync (integrations/stripe/sync.py), the rebuild's staleness check (worker/rebuild.py) and `status`
(worker/status.py) read these; the sync still writes its row itself, in the transaction that stores the
pages the row describes. Plain DB-API queries (metrics/dbapi.py): `status` reads the row without importing
SQLAlchemy (README: start-up time), every other caller through `reader_of(connection)`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from metrics.dbapi import Reader


class StoredSyncState(NamedTuple):
    """The account's sync bookkeeping: what the sync reads back to pick its mode and resume (cursor,
    checkpoint), and how the last sync went, as `status` shows it."""

    mode: str | None
    events_cursor: str | None
    events_cursor_created: int | None
    checkpoint: dict[str, Any]
    rejected: list[dict[str, Any]]
    last_sync_at: int | None = None
    last_sync_ok: bool | None = None
    last_error: str | None = None
    events_seen: list[list[Any]] | None = None  # events the next read skips (integrations/stripe/events.py)


_SYNC_STATE = f"SELECT {', '.join(StoredSyncState._fields)} FROM sync_state WHERE account_id = ?"  # noqa: S608


def sync_state(db: Reader, account_id: int) -> StoredSyncState | None:
    """The account's sync bookkeeping, or None before its first sync created the row."""
    row = db.row(_SYNC_STATE, account_id)
    if row is None:
        return None
    mode, cursor, cursor_created, checkpoint, rejected, last_at, last_ok, error, seen = row
    return StoredSyncState(
        mode=mode,
        events_cursor=cursor,
        events_cursor_created=cursor_created,
        checkpoint=db.json(checkpoint),
        rejected=db.json(rejected),
        last_sync_at=last_at,
        last_sync_ok=db.flag(last_ok),
        last_error=error,
        events_seen=db.json(seen),
    )


def last_sync_at(db: Reader, account_id: int) -> int | None:
    """When the account's last sync ended (Unix seconds), whatever its outcome; None if it never ran."""
    row = db.row("SELECT last_sync_at FROM sync_state WHERE account_id = ?", account_id)
    return None if row is None or row[0] is None else int(row[0])


def customer_created_times(db: Reader, account_id: int) -> list[int]:
    """When each stored, not deleted customer was created (Unix seconds), oldest first."""
    rows = db.rows(
        "SELECT created FROM stripe_customer WHERE account_id = ? AND NOT deleted AND created IS NOT NULL",
        account_id,
    )
    return sorted(int(created) for (created,) in rows)
