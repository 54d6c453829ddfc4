"""The database opened for reading without SQLAlchemy, for the commands that must start fast.

`retention accounts` and `retention status` only read, and importing SQLAlchemy and SQLModel costs more
than the whole start-up goal (README: start-up time). So they open the database the engine would open
(worker/db.py), with the DB-API driver the engine uses (sqlite3, psycopg 3) and the same URL, read only:
- SQLite: the same file (never created here: `mode=rw`), with the engine's 30 s busy timeout (a writer
  holding the lock is waited for, not reported as an error) and `query_only`, its files kept private as the
  engine keeps them;
- PostgreSQL: the connection arguments SQLAlchemy's psycopg dialect derives from the URL, in a read-only
  transaction, JSON decoded with orjson as the engine decodes it.
They then check the schema's version as `ensure_schema` does first; a database not at the newest migration
(or missing, or named by a URL form only the engine handles) is left to the engine, which migrates it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from metrics.dbapi import Reader
from worker.db_target import VERSION_QUERY, DatabaseUrl, is_head, parse_database_url, tighten_sqlite_files

SQLITE_DRIVERS = ("sqlite", "sqlite+pysqlite")
POSTGRESQL_DRIVERS = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")
BUSY_TIMEOUT = 30  # seconds, as the engine's connect_args and `PRAGMA busy_timeout=30000` (worker/db.py)


def open_reader(url: str) -> Reader | None:
    """A read-only connection to the database at `url`, at the newest schema; None when the engine must
    serve (a URL form handled only there, no database file yet, a schema to migrate). Connection errors
    propagate."""
    try:
        target = parse_database_url(url)
    except ValueError:
        return None
    if target.drivername in SQLITE_DRIVERS:
        reader = _sqlite(target)
    elif target.drivername in POSTGRESQL_DRIVERS:
        reader = _postgresql(target)
    else:
        return None
    if reader is None:
        return None
    if not _at_head(reader):
        reader.close()
        return None
    return reader


def _at_head(reader: Reader) -> bool:
    """`worker.db.at_head` over the DB-API connection: the same query, the same answer."""
    try:
        versions = [str(version) for (version,) in reader.rows(VERSION_QUERY)]
    except Exception:  # no such table yet (a new database) or any other doubt: the engine decides
        return False
    return is_head(versions)


def _sqlite(target: DatabaseUrl) -> Reader | None:
    """The file the engine would open (pysqlite resolves a relative path the same way), read only."""
    if target.query or not target.database or target.database == ":memory:":
        return None
    if target.database.startswith("file:"):
        return None
    path = Path(os.path.abspath(target.database))
    if not path.is_file():  # the engine creates it (0600) and the schema
        return None
    tighten_sqlite_files(str(path))
    connection = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT)
    connection.execute("PRAGMA query_only=ON")  # read only, and the last one out still cleans up the WAL
    return Reader(connection, "sqlite", owned=True)


def _postgresql(target: DatabaseUrl) -> Reader | None:
    """psycopg's connection as SQLAlchemy's psycopg dialect makes it (`create_connect_args`): user, password,
    host, port and database from the URL, its query as further connection parameters."""
    if "host" in target.query or any(isinstance(v, list) for v in target.query.values()):
        return None  # several hosts: left to the engine's handling of them
    import orjson
    import psycopg
    from psycopg.types.json import set_json_loads

    options: dict[str, Any] = {
        key: value
        for key, value in (
            ("host", target.host),
            ("port", target.port),
            ("user", target.username),
            ("password", target.password),
            ("dbname", target.database),
        )
        if value
    }
    options.update(target.query)
    connection = psycopg.connect(**options)
    connection.read_only = True
    set_json_loads(orjson.loads, connection)
    return Reader(connection, "postgresql", owned=True)
