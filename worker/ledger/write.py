"""Writing the ledger a batch at a time: ledger rows with bulk inserts (COPY on PostgreSQL), each batch's
snapshots from its rows in memory, then the days every customer shares (worker/mrr_queries.py).

A customer's snapshot on a day depends only on that customer's ledger rows (and product names), so the
snapshots of a batch can be written as soon as its rows are built; only the list of snapshot days depends on
the whole account (from at the month of the first counted revenue): settle_days() fixes it at the end.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date

from sqlalchemy import delete, insert, text
from sqlalchemy.engine import Connection

from metrics.classify import ONE_TIME, RECURRING
from metrics.ledger import ClassifiedLine, LedgerBuild, MrrSnapshot, SnapshotDay
from metrics.mrr import EntryRow
from metrics.tables import table_of
from worker.ledger.build import LEDGER_COLUMNS, LedgerRow
from worker.mrr_queries import (
    bulk_insert,
    delete_snapshot_days,
    fill_snapshot_days,
    points_for,
    stored_snapshot_days,
    write_snapshots,
)

L, S, D, B = table_of(ClassifiedLine), table_of(MrrSnapshot), table_of(SnapshotDay), table_of(LedgerBuild)
CHUNK = 5_000  # ledger rows per insert statement


def clear_account(conn: Connection, account_id: int) -> None:
    """Drop the account's ledger and snapshots (a full rebuild writes them all again)."""
    for table in (L, S, D):
        conn.execute(delete(table).where(table.c.account_id == account_id))


def clear_customers(conn: Connection, account_id: int, customers: Sequence[str]) -> None:
    """Drop these customers' ledger rows and snapshots (every day): their batch is written again."""
    for table in (L, S):
        conn.execute(
            delete(table).where(table.c.account_id == account_id, table.c.customer_id.in_(customers))
        )


def insert_ledger(conn: Connection, rows: Sequence[LedgerRow]) -> None:
    """Insert ledger rows."""
    for i in range(0, len(rows), CHUNK):
        bulk_insert(conn, "ledger_line", LEDGER_COLUMNS, rows[i : i + CHUNK])


def _entries(rows: Iterable[LedgerRow], names: dict[str, str]) -> dict[str, list[EntryRow]]:
    """Counted recurring and one-time rows by customer, as the snapshot spreader reads them (what the stored
    ledger would give: plan = the product's name, else its id)."""
    groups: dict[str, list[EntryRow]] = defaultdict(list)
    for (
        _account,
        line_id,
        _invoice,
        customer_id,
        klass,
        _reason,
        counted,
        _excluded,
        period_start,
        _period_end,
        _currency,
        _net,
        _monthly,
        monthly_reporting,
        amount_reporting,
        product_id,
        _price_id,
        _usage_type,
        _subscription_id,
        _subscription_item_id,
        _invoice_status,
        invoiced_at,
        mrr_end,
        _quantity,
        _discount,
    ) in rows:  # one unpacking per row: reading eleven fields by name costs more
        if counted and klass in (RECURRING, ONE_TIME):
            groups[customer_id].append(
                (
                    klass,
                    period_start,
                    mrr_end,
                    monthly_reporting or 0,
                    amount_reporting or 0,
                    invoiced_at,
                    names.get(product_id, product_id),  # type: ignore[arg-type]
                    line_id,
                )
            )
    return groups


def batch_snapshots(
    conn: Connection, account_id: int, days: Sequence[date], rows: Iterable[LedgerRow], names: dict[str, str]
) -> None:
    """The snapshots of a batch's customers on these days, from the rows just built (days are not marked
    done here: settle_days does that once for every customer)."""
    if days:
        groups = _entries(rows, names)
        write_snapshots(conn, account_id, points_for(days), groups.items(), mark_days=False)


def settle_days(conn: Connection, account_id: int, written: set[date], wanted: set[date]) -> bool:
    """Make the stored snapshot days exactly `wanted`: days written for the batches but not wanted are
    dropped, wanted days not written are computed for every customer from the stored ledger (one streamed
    pass), and the days are marked done. True when a day was added that way (a new today)."""
    stored = set(stored_snapshot_days(conn, account_id))
    delete_snapshot_days(conn, account_id, sorted((written | stored) - wanted))
    fill_snapshot_days(conn, account_id, sorted(wanted - written))
    marked = sorted((wanted & written) - stored)
    if marked:
        conn.execute(insert(D), [{"account_id": account_id, "day": d} for d in marked])
    return bool(wanted - written)


def record_build(conn: Connection, account_id: int, sync_at: int | None, inputs: str) -> None:
    """Note when the ledger was built, from which sync and with which inputs (ledger_is_stale reads it)."""
    conn.execute(delete(B).where(B.c.account_id == account_id))
    conn.execute(
        insert(B).values(account_id=account_id, built_at=int(time.time()), sync_at=sync_at, inputs=inputs)
    )


def refresh_statistics(conn: Connection, everything: bool) -> None:
    """PostgreSQL's planner statistics, fresh: of every table after a full rebuild, of the snapshots after a
    rebuild that added a day.

    A database just filled by a full sync and rebuild has none until autovacuum gets to it, and a day added
    tonight lies past the snapshots' histogram: either way the planner takes a snapshot day for one row, and
    the metrics join two days of 100,000 customers row by row (minutes; with statistics, a hash join in
    seconds). ANALYZE reads a sample of each table, so it costs about a second at any size. SQLite plans
    without statistics, as it always has here."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text("ANALYZE" if everything else f"ANALYZE {table_of(MrrSnapshot).name}"))
