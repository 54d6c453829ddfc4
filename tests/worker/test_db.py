from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from worker.db import normalize_url


def test_plain_postgresql_url_uses_psycopg3() -> None:
    assert normalize_url("postgresql://alice@db.example/retention").startswith("postgresql+psycopg://alice@")
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    """The Alembic head and the SQLModel tables agree on both databases (run `make migration` if not)."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    assert set(inspect(engine).get_table_names()) >= {t.name for t in SQLModel.metadata.sorted_tables}
