"""The one way any layer reaches a stored table as SQLAlchemy Core, and reads it fast.

SQLModel classes carry their Core `Table` as `__table__`, which mypy cannot see; every module that builds a
statement over a stored table asks here instead of reaching for the attribute itself. `raw_rows` lives beside
it because the repositories (integrations/stripe/repository/) and the ledger queries (worker/mrr_queries.py)
both read large tables through it, and metrics/ is the layer both of them may import.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count as counter
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection

CHUNK = 50_000  # rows fetched from the driver at a time: bounded memory, few round trips
_CURSORS = counter()  # server-side cursor names, unique in the process


def table_of(model: type) -> Table:
    """The Core table behind a SQLModel class."""
    table: Table = getattr(model, "__table__")  # noqa: B009
    return table


def raw_rows(
    conn: Connection, query: Any, stream: bool = False, chunk: int = CHUNK
) -> Iterator[tuple[Any, ...]]:
    """The rows of a Core select straight from the driver's cursor, as plain tuples (no SQLAlchemy Row and
    result processing per row: that cost more than the work done with the rows).

    Only for selects whose parameters are integers or constant strings (inlined as literals) and whose columns
    need no result conversion (text, integers, booleans as the driver gives them). `stream` uses a server-side
    cursor on PostgreSQL, so memory stays bounded by `chunk` rows (fewer for a stream read a little at a
    time beside others).
    """
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    driver = conn.connection.driver_connection
    if stream and conn.dialect.name == "postgresql":
        cursor = driver.cursor(name=f"raw_rows_{next(_CURSORS)}")  # type: ignore[union-attr]
        cursor.itersize = chunk
    else:
        cursor = driver.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        while True:
            batch = cursor.fetchmany(chunk)
            if not batch:
                break
            yield from batch
    finally:
        cursor.close()
