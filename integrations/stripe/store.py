"""Bulk upserts of parsed rows: one INSERT ... ON CONFLICT DO UPDATE per table per page, SQLite and PostgreSQL.

Upserting by (account_id, Stripe id) makes a sync idempotent: a repeated or resumed sync rewrites the same values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, delete, not_, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from integrations.stripe.models import StripeInvoiceLine, StripeSubscriptionItem
from integrations.stripe.records import INSERT_ONLY

Row = dict[str, Any]


def table_of(model: type) -> Table:
    """The Core table behind a SQLModel class (mypy does not see `__table__`)."""
    table: Table = getattr(model, "__table__")  # noqa: B009
    return table


def upsert(conn: Connection, table: Table, rows: list[Row], account_id: int) -> None:
    """Insert or update rows by primary key; only the columns present in the rows are updated."""
    if not rows:
        return
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Row]] = {}
    for row in rows:
        row = dict(row)
        keep = tuple(row.pop(INSERT_ONLY, ()))
        groups.setdefault((tuple(sorted(row)), keep), []).append(row)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    keys = [c.name for c in table.primary_key.columns]
    for (columns, keep), group in groups.items():
        dedup = {row["id"]: {**row, "account_id": account_id} for row in group}  # last one wins within a page
        stmt = insert(table)
        update = {c: stmt.excluded[c] for c in columns if c not in keys and c not in keep}
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=update) if update \
            else stmt.on_conflict_do_nothing(index_elements=keys)
        conn.execute(stmt, list(dedup.values()))  # executemany: one cached statement, batched by the driver


def prune_children(conn: Connection, account_id: int, parent_ids: Iterable[str], keep: Iterable[str],
                   kind: str) -> None:
    """Drop stored items/lines of these parents that Stripe no longer lists (a draft edited, an item removed)."""
    parents = list(parent_ids)
    if not parents:
        return
    table = table_of(StripeSubscriptionItem if kind == "items" else StripeInvoiceLine)
    parent_col = table.c.subscription_id if kind == "items" else table.c.invoice_id
    kept = [(account_id, k) for k in keep]
    stmt = delete(table).where(table.c.account_id == account_id, parent_col.in_(parents))
    if kept:
        stmt = stmt.where(not_(tuple_(table.c.account_id, table.c.id).in_(kept)))
    conn.execute(stmt)
