"""Reads of stored tables as plain DB-API queries, one SQL text for SQLite and PostgreSQL.

`retention accounts` and `retention status` must start in a fraction of a second, and importing SQLAlchemy
alone costs more than that (README: start-up time). The repositories they read through (the account list,
the sync's bookkeeping, the stored counts, the run log, the last Slack delivery and watch tick) therefore take
a `Reader`: a DB-API connection with the few conversions SQLAlchemy would have applied to those columns. The
same functions serve every other caller through `reader_of(connection)`, so each query exists once.

Queries are written with `?` placeholders and only ever bind plain values; they name tables and columns as
the models do (the repositories' tests run them on both databases).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class Reader:
    """A DB-API connection to SQLite (`sqlite3`) or PostgreSQL (psycopg 3), and which of the two it is."""

    def __init__(self, connection: Any, dialect: str, owned: bool = False) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"no plain reads for {dialect} databases")
        self.connection = connection
        self.dialect = dialect
        self._owned = owned  # opened for this reader (closed with it), not borrowed from an engine

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Every row of a query, as tuples."""
        if self.dialect == "postgresql":  # psycopg's placeholder; no query here holds a literal % or ?
            sql = sql.replace("?", "%s")
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def row(self, sql: str, *params: Any) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""
        found = self.rows(sql, *params)
        return found[0] if found else None

    @staticmethod
    def flag(value: Any) -> bool | None:
        """A boolean column: SQLite gives 0 / 1, PostgreSQL a bool."""
        return None if value is None else bool(value)

    def json(self, value: Any) -> Any:
        """A JSON column: SQLite keeps the text (decoded here with orjson, as the engine does); psycopg
        decodes it itself."""
        if self.dialect == "sqlite" and isinstance(value, (str, bytes)):
            return orjson.loads(value)
        return value

    @staticmethod
    def moment(value: Any) -> datetime | None:
        """A DateTime column: SQLite keeps ISO text (parsed as SQLAlchemy parses it, naive when stored so),
        psycopg gives a datetime."""
        if isinstance(value, str):
            return datetime.fromisoformat(value)
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Closes a connection opened for this reader; one borrowed from an engine goes back with it."""
        if self._owned:
            self.connection.close()


def reader_of(connection: Connection) -> Reader:
    """The same reads over an engine's connection (inside its transaction, if one is open)."""
    return Reader(connection.connection.driver_connection, connection.dialect.name)
