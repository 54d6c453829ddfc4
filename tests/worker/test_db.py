from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from integrations.stripe.models import STRIPE_TABLES
from worker.db import ensure_schema, normalize_url
from worker.db_target import SQLITE_COMPANIONS, private_sqlite_files


def test_plain_postgresql_url_uses_psycopg3() -> None:
    assert normalize_url("postgresql://alice@db.example/retention").startswith("postgresql+psycopg://alice@")
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    """The Alembic head and the SQLModel tables agree on both databases (run `make migration` if not)."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    assert set(inspect(engine).get_table_names()) >= {t.name for t in SQLModel.metadata.sorted_tables}


def test_every_index_of_a_stripe_table_leads_with_the_account(engine: Engine) -> None:
    """Every query of a stored Stripe table names the account, so an index on a bare column (migration 0007
    dropped four) would only be one more write for each row a sync stores, and SQLite once took such an index
    over the account's own and walked the whole account."""
    inspector = inspect(engine)
    indexes = {
        (model.__tablename__, index["name"]): index["column_names"]
        for model in STRIPE_TABLES
        for index in inspector.get_indexes(str(model.__tablename__))
    }
    assert ("stripe_invoice_line", "ix_stripe_invoice_line_parent") in indexes  # the tables were read
    assert {key: columns for key, columns in indexes.items() if columns[0] != "account_id"} == {}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    """Billing data: readable by its owner only, also under a permissive umask."""
    old = os.umask(0o022)
    try:
        database = tmp_path / "private.db"
        engine = ensure_schema(f"sqlite:///{database}")
        with engine.begin() as conn:  # a write, so the write-ahead log and shared memory files exist
            conn.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
            conn.execute(text("INSERT INTO probe VALUES (1)"))
            files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert _mode(Path(f"{database}.migrate-lock")) == 0o600
    finally:
        os.umask(old)


def test_an_existing_database_left_readable_is_tightened(tmp_path: Path) -> None:
    database = tmp_path / "old.db"
    sqlite3.connect(database).close()
    companions = [Path(f"{database}{suffix}") for suffix in SQLITE_COMPANIONS]
    for path in [database, *companions]:
        path.touch()
        path.chmod(0o644)  # as an older version (or sqlite3 with the usual umask) left them
    private_sqlite_files(str(database))
    assert {p.name: _mode(p) for p in [database, *companions]} == {
        p.name: 0o600 for p in [database, *companions]
    }


def test_a_new_sqlite_database_gets_16_kb_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    """The page size is fixed when SQLite first writes a file: a database we create gets 16 KB pages (fewer
    reads and writes for the same bytes, worker/db.py), one created before keeps its 4 KB and still migrates
    and works in WAL mode."""
    fresh = ensure_schema(f"sqlite:///{tmp_path / 'new.db'}")
    old_path = tmp_path / "old.db"
    with sqlite3.connect(old_path) as old_conn:
        old_conn.execute("PRAGMA page_size=4096")
        old_conn.execute("CREATE TABLE left_by_an_older_version (x INTEGER)")
    old = ensure_schema(f"sqlite:///{old_path}")
    for engine, size in ((fresh, 16384), (old, 4096)):
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA page_size")).scalar() == size
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert "stripe_invoice" in inspect(conn).get_table_names()
        engine.dispose()


def test_memory_and_missing_folders_are_left_to_sqlite(tmp_path: Path) -> None:
    private_sqlite_files(":memory:")
    private_sqlite_files(None)
    private_sqlite_files(str(tmp_path / "absent" / "x.db"))
    assert not (tmp_path / "absent").exists()
