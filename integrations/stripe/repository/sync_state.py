"""Reads a sync makes of what earlier syncs stored: its own bookkeeping row, and the customers' creation
times that split the invoice history into ranges of equal work.

The sync (integrations/stripe/sync.py), the rebuild's staleness check (worker/rebuild.py) and `status`
(worker/status.py) read these; the sync still writes its row itself, in the transaction that stores the
pages the row describes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.engine import Connection

from integrations.stripe.models import StripeCustomer, SyncState
from metrics.tables import table_of


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


def sync_state(conn: Connection, account_id: int) -> StoredSyncState | None:
    """The account's sync bookkeeping, or None before its first sync created the row."""
    st = table_of(SyncState)
    query = select(*(st.c[name] for name in StoredSyncState._fields)).where(st.c.account_id == account_id)
    row = conn.execute(query).first()
    return None if row is None else StoredSyncState._make(row)


def last_sync_at(conn: Connection, account_id: int) -> int | None:
    """When the account's last sync ended (Unix seconds), whatever its outcome; None if it never ran."""
    st = table_of(SyncState)
    value: int | None = conn.execute(select(st.c.last_sync_at).where(st.c.account_id == account_id)).scalar()
    return value


def customer_created_times(conn: Connection, account_id: int) -> list[int]:
    """When each stored, not deleted customer was created (Unix seconds), oldest first."""
    c = table_of(StripeCustomer)
    query = select(c.c.created).where(
        c.c.account_id == account_id, c.c.deleted.is_(False), c.c.created.is_not(None)
    )
    return sorted(int(created) for (created,) in conn.execute(query))
