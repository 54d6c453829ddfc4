"""Scratch PostgreSQL databases for tests: created on the server the tests use, dropped afterwards.

Each test run (and each test that needs a database nobody has migrated) gets a database of its own, so runs
on one server never see each other's rows and a failed run leaves nothing behind.
"""

from __future__ import annotations

import os
import uuid

import psycopg

from worker.db import get_engine

PG_ADMIN_URL = os.environ.get("RETENTION_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def create_database(prefix: str, options: str = "") -> str:
    """The URL of a new, empty database (psycopg.OperationalError when the server does not answer);
    `options` are CREATE DATABASE's (a template, a locale)."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}" {options}')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    """Drop a database made by create_database, closing our pooled connections and any left open."""
    get_engine(url).dispose()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
