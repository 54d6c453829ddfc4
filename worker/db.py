"""Engines and sessions for SQLite and PostgreSQL, and the schema kept current by Alembic.

Users write `postgresql://user@host/db`; SQLAlchemy would pick psycopg2 for that, which we do not ship, so the
URL is rewritten to the psycopg 3 driver. Every command that needs the schema calls `ensure_schema` first.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from worker.db_target import MIGRATIONS, VERSION_QUERY, head_revision, is_head, private_sqlite_files

if TYPE_CHECKING:
    from alembic.config import Config


def normalize_url(url: str) -> str:
    """Map the URLs people write onto drivers we install (psycopg 3 for PostgreSQL)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the worker and a reading command share the file; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    # 16 KB pages instead of 4 KB, for a new database only (SQLite fixes a file's page size when it is first
    # written; an existing database keeps its own, and in WAL mode not even VACUUM changes it): the same bytes
    # in a quarter of the reads and writes, whose system calls took a quarter of the CPU of a 100,000-customer
    # first sync. docs/benchmarks.md ("16 KB SQLite pages") has whole nights measured both ways. It must come
    # before journal_mode=WAL, which writes the new file's header.
    cursor.execute("PRAGMA page_size=16384")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # A sync or a rebuild writes tens of MB: a checkpoint every 10,000 pages of log (160 MB; 40 MB in a
    # database of 4 KB pages) rather than SQLite's 1,000 syncs the disk less often and copies a page rewritten
    # by several commits once; a 16 MB page cache (2 MB by default) keeps the indexes a sync writes in memory
    # instead of reading them back from the OS. benchmarks/sync_bench.py, with 4 KB pages: 123 -> 24 fdatasync
    # and 48,000 -> 17,000 pread calls over its 26,630 invoices.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute("PRAGMA cache_size=-16384")
    cursor.close()


def _json_serializer(value: object) -> str:
    """JSON columns as compact UTF-8 text, with orjson (the sync stores a raw object per row); non-string keys
    become strings, as with the stdlib encoder."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# For JSON columns; orjson.loads takes the str the drivers return.
JSON_CODECS = {"json_serializer": _json_serializer, "json_deserializer": orjson.loads}


@lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """One engine per URL per process (engines hold the connection pool)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        private_sqlite_files(make_url(url).database)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **JSON_CODECS)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, **JSON_CODECS)
    return engine


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config(str(Path(__file__).parent / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


_upgraded: set[str] = set()
# Alembic keeps its migration context in module globals, so two threads must not upgrade at the same time.
_upgrade_lock = threading.Lock()
# Any constant shared by every process of the project: the key of PostgreSQL's advisory lock for migrations.
_PG_MIGRATION_LOCK = 0x52544E  # "RTN"


def ensure_schema(url: str) -> Engine:
    """Upgrade the database to the newest migration (once per process and URL) and return its engine.

    The worker, beat and a command often start together on a fresh database; without a lock each would see an
    empty schema and try to create it (seen: "table alembic_version already exists", and Alembic's global
    context raising KeyError when threads interleave). Threads serialize on a lock; processes on PostgreSQL's
    advisory lock or, for SQLite, an exclusive lock on a file beside the database. The loser then finds the
    schema at head and does nothing.
    """
    engine = get_engine(url)
    if url in _upgraded:
        return engine
    if at_head(engine):  # the common case: no Alembic import, no lock (start-up time: README)
        _upgraded.add(url)
        return engine
    from alembic import command

    with _upgrade_lock:
        if url not in _upgraded:
            cfg = alembic_config(url)
            with _sqlite_file_lock(engine), engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
            _upgraded.add(url)
    return engine


def at_head(engine: Engine) -> bool:
    """Whether the database is already at the newest migration (then there is nothing to upgrade)."""
    if head_revision() is None:
        return False
    try:
        with engine.connect() as conn:
            versions = list(conn.execute(text(VERSION_QUERY)).scalars())
    except Exception:  # no such table yet (a new database) or any other doubt: let Alembic decide
        return False
    return is_head(versions)


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive flock on `<database>.migrate-lock` for file-backed SQLite; nothing for other databases."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock = f"{database}.migrate-lock"
    with os.fdopen(os.open(lock, os.O_RDWR | os.O_CREAT, 0o600), "r+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits at the end of the block and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
