"""A first full sync into an empty SQLite database builds the customer indexes once, at its end.

Stripe lists invoices newest first across all customers, so each row a sync writes lands at a random place of
the indexes keyed by customer: past the page cache (from some tens of thousands of customers), every page of
those indexes is rewritten, logged and checkpointed again in each of the sync's transactions. Built at the end
from the finished tables, SQLite sorts once instead. Only the customer indexes: the sync itself reads the
parent indexes (a page's stale lines and items) and the primary keys (its upserts).

Only when the sync tables hold no row of any account, so no other account's reads lose an index; the choice is
kept in the full sync's checkpoint, so a resumed sync goes on the same way, and every sync restores missing
indexes before anything else (CREATE INDEX IF NOT EXISTS: nothing to do when they are there). PostgreSQL keeps
its indexes: its first sync grows linearly (docs/benchmarks.md).
"""

from __future__ import annotations

from sqlalchemy import Index, exists, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, DropIndex

from integrations.stripe import models
from metrics.tables import table_of

_TABLES = (models.StripeSubscription, models.StripeInvoice, models.StripeInvoiceLine)
# The indexes led by (account_id, customer_id): written at random by a sync, read only after it
DEFERRED: tuple[Index, ...] = tuple(
    index
    for model in _TABLES
    for index in sorted(table_of(model).indexes, key=lambda i: str(i.name))
    if [c.name for c in index.columns][:2] == ["account_id", "customer_id"]
)


def _empty(conn: Connection) -> bool:
    """No row of any account in the tables whose indexes would go."""
    return not any(conn.execute(select(exists().select_from(table_of(m)))).scalar() for m in _TABLES)


def defer(conn: Connection) -> bool:
    """Drop the customer indexes if this is SQLite and the tables are empty; whether they were dropped."""
    if conn.dialect.name != "sqlite" or not _empty(conn):
        return False
    for index in DEFERRED:
        conn.execute(DropIndex(index, if_exists=True))
    return True


def missing(conn: Connection) -> bool:
    """Whether a customer index is missing: read first, so a run that finds them all writes nothing."""
    inspector = inspect(conn)
    return any(not inspector.has_index(str(i.table.name), str(i.name)) for i in DEFERRED)  # type: ignore[union-attr]


def restore(conn: Connection) -> None:
    """Build any customer index that is missing (a deferring sync's end, or one that never reached it)."""
    for index in DEFERRED:
        conn.execute(CreateIndex(index, if_not_exists=True))
