"""Bulk upserts of parsed rows: one INSERT ... ON CONFLICT DO UPDATE per table per page, SQLite and
PostgreSQL.

Upserting by (account_id, Stripe id) makes a sync idempotent: a repeated or resumed sync rewrites the same
values. The statement is built once per table and column set. SQLite gets it with the driver's executemany
(SQLAlchemy's per-row parameter processing cost more than parsing the objects did); PostgreSQL gets a page as
one statement reading a JSON document of its rows, where executemany sent one statement per row and cost our
side nearly twice the CPU (benchmarks/sync_bench.py --postgres).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from operator import itemgetter
from typing import Any, Protocol

import orjson
from sqlalchemy import JSON, Table, delete, func, not_, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import Executable

from integrations.stripe import models
from integrations.stripe.records import INSERT_ONLY
from metrics.tables import table_of

Row = dict[str, Any]


class Statements(Protocol):
    """What the writes below use of a connection: a SQLAlchemy Connection, or a full sync's separate writer
    process (writer_process.py), which runs them elsewhere and returns no result."""

    dialect: Dialect

    def execute(self, statement: Executable, /) -> Any: ...

    def exec_driver_sql(self, statement: str, parameters: Any = ..., /) -> Any: ...


# Where the objects of each Stripe list are stored, and the children two lists embed (a subscription's items,
# an invoice's lines): the sync writes a page of a list through these.
LIST_TABLES: dict[str, Table] = {
    "customers": table_of(models.StripeCustomer),
    "products": table_of(models.StripeProduct),
    "prices": table_of(models.StripePrice),
    "subscriptions": table_of(models.StripeSubscription),
    "invoices": table_of(models.StripeInvoice),
    "credit_notes": table_of(models.StripeCreditNote),
}
CHILD_TABLES: dict[str, Table] = {
    "subscriptions": table_of(models.StripeSubscriptionItem),
    "invoices": table_of(models.StripeInvoiceLine),
}
# The column of a child row that names its parent
_PARENT_COLUMN = {"subscriptions": "subscription_id", "invoices": "invoice_id"}


@lru_cache(maxsize=256)
def _statement(table: Table, columns: tuple[str, ...], keep: tuple[str, ...], placeholder: str) -> str:
    keys = [c.name for c in table.primary_key.columns]
    names = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(placeholder for _ in columns)
    updates = [f'"{c}" = excluded."{c}"' for c in columns if c not in keys and c not in keep]
    conflict = ", ".join(f'"{k}"' for k in keys)
    action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
    # built from our own tables' and columns' names only; the values are bound parameters
    return f'INSERT INTO "{table.name}" ({names}) VALUES ({values}) ON CONFLICT ({conflict}) {action}'  # noqa: S608


@lru_cache(maxsize=64)
def _json_columns(table: Table) -> frozenset[str]:
    return frozenset(c.name for c in table.c if isinstance(c.type, JSON))


# For one shape of row: the columns written (plain ones first, then JSON ones) and a function turning a row
# into its SQLite statement parameters, JSON values encoded to text here, once, not by SQLAlchemy per row.
Plan = tuple[tuple[str, ...], Callable[[Row, int], tuple[Any, ...]]]


@lru_cache(maxsize=256)
def _row_plan(table: Table, keys: frozenset[str]) -> Plan:
    json_cols = _json_columns(table)
    plain = tuple(sorted(k for k in keys if k not in (INSERT_ONLY, "account_id") and k not in json_cols))
    encoded = tuple(sorted(k for k in keys if k in json_cols))
    get = itemgetter(*plain) if len(plain) > 1 else (lambda row: tuple(row[c] for c in plain))
    dumps = orjson.dumps
    if len(encoded) == 1 and len(plain) > 1:  # every Stripe table: one `raw` column
        (name,) = encoded

        def values(row: Row, account_id: int) -> tuple[Any, ...]:
            return (*get(row), dumps(row[name]).decode(), account_id)

    else:

        def values(row: Row, account_id: int) -> tuple[Any, ...]:
            return (*get(row), *(dumps(row[c]).decode() for c in encoded), account_id)

    return (*plain, *encoded), values


def upsert(conn: Statements, table: Table, rows: list[Row], account_id: int) -> None:
    """Insert or update rows by primary key; only the columns present in the rows are updated."""
    if not rows:
        return
    # Rows with the same keys share a statement. A parser builds every row of a kind with the same keys, so
    # the common case is one group, told by comparing each row's keys with the first's (no per-row tuple).
    first = rows[0].keys()
    if INSERT_ONLY not in first and all(row.keys() == first for row in rows):
        groups = {(frozenset(first), ()): rows}
    else:
        groups = {}
        for row in rows:
            groups.setdefault((frozenset(row), tuple(row.get(INSERT_ONLY, ()))), []).append(row)
    postgres = conn.dialect.name == "postgresql"
    for (keys, keep), group in groups.items():
        columns, values = _row_plan(table, keys)
        unique = {row["id"]: row for row in group}.values()  # the last copy of an id within a page wins
        if postgres:
            document = orjson.dumps(list(unique)).decode()
            conn.exec_driver_sql(_json_statement(table, columns, keep), (account_id, document))
        else:
            params = [values(row, account_id) for row in unique]
            conn.exec_driver_sql(_statement(table, (*columns, "account_id"), keep, "?"), params)


@lru_cache(maxsize=256)
def _json_statement(table: Table, columns: tuple[str, ...], keep: tuple[str, ...]) -> str:
    """PostgreSQL: `_statement` reading its rows from one JSON document (the page's row dicts, account_id
    bound apart) instead of VALUES: a page is one statement of two parameters, prepared once per shape
    whatever its row count, which the server takes apart in one pass (json_to_recordset). Keys of a row that
    are not `columns` are ignored there; a JSON column comes out as the very text orjson wrote, as the
    SQLite path stores it."""
    dialect = postgresql.dialect()
    names = ", ".join(f'"{c}"' for c in columns)
    types = ", ".join(f'"{c}" {table.c[c].type.compile(dialect=dialect)}' for c in columns)
    head, tail = _statement(table, (*columns, "account_id"), keep, "%s").split(" VALUES ", 1)
    conflict = tail[tail.index(" ON CONFLICT") :]
    # built from our own tables' and columns' names and types only; the values are bound parameters
    return f"{head} SELECT {names}, %s FROM json_to_recordset(%s::json) AS page ({types}){conflict}"  # noqa: S608


def commit_without_waiting(conn: Connection) -> None:
    """PostgreSQL: this transaction's commit returns before its WAL reaches the disk (`SET LOCAL
    synchronous_commit = off`; SQLite is left as it is, already at `synchronous=NORMAL`).

    A first night commits a page (up to BATCH pages) at a time, some 14,000 pages at 100,000 customers, and
    waiting for each commit's flush kept the writer idle while the server's WAL writer could have flushed
    several together. It is safe because the stored rows are a copy of Stripe that a sync can always
    derive again: a crash of the server (not of our process) loses at most the last fraction of a second of
    commits, whole transactions and never part of one, and each page is committed with the cursor that points
    past it, so the next sync resumes from the last page that survived and writes what was lost again. The
    database stays consistent; only `SET LOCAL` is used, so the connection goes back to the pool as it was."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL synchronous_commit = off"))


def refresh_statistics(conn: Connection) -> None:
    """PostgreSQL: fresh planner statistics of the tables a sync writes (`ANALYZE`; nothing on SQLite, which
    plans without them).

    A first sync fills tables that have none, and autovacuum may be late or off: the planner then takes an
    account for a few hundred rows, and reads the rows of a page's subscriptions (the pruning of their items)
    or of a rebuild's batch of customers by walking the whole account's index range instead of looking each
    one up, quadratic in customers. ANALYZE samples at most 30,000 rows of a table, a fraction of a second."""
    if conn.dialect.name == "postgresql":
        for table in (*LIST_TABLES.values(), *CHILD_TABLES.values()):
            # our own tables' names only
            conn.execute(text(f'ANALYZE "{table.name}"'))


# The lists whose objects a full sync marks deleted when Stripe no longer lists them (subscriptions are
# listed with status=all, so every one Stripe keeps is there; a deleted customer is never listed).
TRACKED_LISTS = ("customers", "subscriptions")


def mark_listed(rows: list[Row], listing: int) -> None:
    """Stamp rows a full sync's list held with that sync's mark (the mark-deleted step compares it)."""
    for row in rows:
        row["listed_at"] = listing


def touch_listed(conn: Statements, list_name: str, account_id: int, ids: list[str], listing: int) -> None:
    """Stamp stored rows whose listed copy could not be parsed (rejected) with the sync's mark: Stripe still
    lists them, so they are not deleted; their stored values stay as they were."""
    if not ids:
        return
    table = LIST_TABLES[list_name]
    conn.execute(
        update(table)
        .where(table.c.account_id == account_id, table.c.id.in_(ids))
        .values(listed_at=listing, deleted=False, deleted_at=None)
    )


def last_listing(conn: Connection, account_id: int) -> int:
    """The newest full sync's mark on the account's rows (0 before any): a new full sync's mark must be
    greater, so rows it does not list are told from the ones it does even within one second."""
    found = 0
    for name in TRACKED_LISTS:
        table = LIST_TABLES[name]
        query = select(func.max(table.c.listed_at)).where(table.c.account_id == account_id)
        found = max(found, int(conn.execute(query).scalar() or 0))
    return found


def mark_unlisted_deleted(conn: Connection, account_id: int, listing: int, started: int) -> dict[str, int]:
    """After a complete full sync (mark `listing`, started at `started`): customers and subscriptions it did
    not list are gone from Stripe. They are kept (their history still counts) and marked deleted from
    `started` on; the metrics leave them out from then. Returns how many of each were newly marked."""
    marked: dict[str, int] = {}
    for name in TRACKED_LISTS:
        table = LIST_TABLES[name]
        stmt = (
            update(table)
            .where(
                table.c.account_id == account_id,
                table.c.deleted.is_(False),
                or_(table.c.listed_at.is_(None), table.c.listed_at < listing),
            )
            .values(deleted=True, deleted_at=started)
        )
        marked[name] = conn.execute(stmt).rowcount or 0
    return marked


def stamp_deletions(
    conn: Connection, account_id: int, now: int, when: Mapping[str, int] | None = None
) -> None:
    """Customers stored as deleted (Stripe's `deleted: true`, found through an event) without a time yet:
    they are left out of the metrics from the time of their `customer.deleted` event (`when`), else from
    `now`. The event's time, not the sync's, so every reader of the same events stores the same history."""
    table = LIST_TABLES["customers"]
    unstamped = (table.c.account_id == account_id, table.c.deleted.is_(True), table.c.deleted_at.is_(None))
    for customer_id, created in (when or {}).items():
        conn.execute(update(table).where(*unstamped, table.c.id == customer_id).values(deleted_at=created))
    conn.execute(update(table).where(*unstamped).values(deleted_at=now))


def prune_children(
    conn: Statements, account_id: int, parent_ids: Iterable[str], keep: Iterable[str], parent_list: str
) -> None:
    """Drop stored children (CHILD_TABLES) of these parents of `parent_list` that Stripe no longer lists (a
    draft invoice edited, a subscription item removed)."""
    parents = list(parent_ids)
    if not parents:
        return
    table = CHILD_TABLES[parent_list]
    parent_col = table.c[_PARENT_COLUMN[parent_list]]
    kept = [(account_id, k) for k in keep]
    stmt = delete(table).where(table.c.account_id == account_id, parent_col.in_(parents))
    if kept:
        stmt = stmt.where(not_(tuple_(table.c.account_id, table.c.id).in_(kept)))
    conn.execute(stmt)
