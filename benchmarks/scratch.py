"""Scratch databases for the benchmarks: a temporary SQLite file, or a PostgreSQL database created for the run
and dropped after it, so a benchmark never touches data of its own machine's users."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import Engine
from sqlmodel import Session

from worker.db import ensure_schema, get_engine
from worker.models import Account

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def scratch_database(kind: str, prefix: str) -> Iterator[tuple[Engine, str]]:
    """A migrated engine and its URL for `kind` ("sqlite" or "postgres"), gone when the block ends."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            engine = ensure_schema(url)
            try:
                yield engine, url
            finally:
                engine.dispose()
        return
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        engine = ensure_schema(url)
        try:
            yield engine, url
        finally:
            engine.dispose()
            get_engine(url).dispose()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_account(engine: Engine) -> Account:
    """The account a benchmark stores its data under (reporting in USD, no real key)."""
    with Session(engine, expire_on_commit=False) as session:
        account = Account(name="bench", key_encrypted="x", reporting_currency="usd")
        session.add(account)
        session.commit()
        session.refresh(account)
    return account
