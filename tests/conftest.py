"""Shared fixtures: isolated configuration, SQLite and PostgreSQL databases, Redis, a local Stripe server.

Tests that need PostgreSQL or Redis fail in CI (CI=true) when the service does not answer, and skip elsewhere
with a message that says how to start it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
import redis
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel
from typer.testing import CliRunner

from tests.support.pg import create_database, drop_database
from tests.support.redis_db import REDIS_URL, ForeignDatabase, claim, reset
from tests.support.slack_server import FakeSlack
from worker.db import ensure_schema
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.settings import get_settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

PG_HINT = (
    "PostgreSQL is not answering on 127.0.0.1:5432; start it with "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
)
REDIS_HINT = (
    "Redis is not answering on 127.0.0.1:6379; start it with "
    "`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no`"
)


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message + " (CI=true: services must run, tests never skip in CI)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets its own RETENTION_HOME, SQLite database and Fernet key; no Stripe/Slack variables."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("RETENTION_HOME", str(home))
    monkeypatch.setenv("RETENTION_DATABASE_URL", f"sqlite:///{home / 'retention.db'}")
    monkeypatch.setenv("RETENTION_SECRET_KEY", Fernet.generate_key().decode())
    for var in ("STRIPE_API_KEY", "SLACK_WEBHOOK_URL", "RETENTION_STRIPE_RPS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RETENTION_RATES_URL", "")  # no night downloads ECB rates; rate tests serve their own
    yield


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Engine:
    return ensure_schema(sqlite_url)


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end."""
    try:
        url = create_database("rt_test")
    except psycopg.OperationalError:
        _unavailable(PG_HINT)
    yield url
    drop_database(url)


@pytest.fixture
def pg_engine(pg_database_url: str) -> Engine:
    """The run's PostgreSQL database, migrated, with every table emptied before the test."""
    engine = ensure_schema(pg_database_url)
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Storage tests run on both databases."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_engine")
    return request.getfixturevalue("pg_engine")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The database the commands use in this test (RETENTION_DATABASE_URL): the per-test SQLite file, or the
    run's PostgreSQL, migrated and emptied."""
    if request.param == "postgres":
        request.getfixturevalue("pg_engine")  # migrated and truncated
        url: str = request.getfixturevalue("pg_database_url")
        monkeypatch.setenv("RETENTION_DATABASE_URL", url)
        return url
    return get_settings().database_url


@pytest.fixture(scope="session")
def redis_database() -> Iterator[str]:
    """The tests' Redis database (RETENTION_TEST_REDIS), claimed once per run and emptied when it ends."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        _unavailable(REDIS_HINT)
    try:
        claim(client)
    except ForeignDatabase as refused:
        pytest.fail(str(refused))
    yield REDIS_URL
    client.flushdb()


@pytest.fixture
def redis_url(redis_database: str) -> str:
    """The tests' Redis database, empty but for its marker at the start of each test."""
    reset(redis.Redis.from_url(redis_database))
    return redis_database


@pytest.fixture
def stripe_world() -> StripeWorld:
    return StripeWorld()


@pytest.fixture
def fake_stripe(stripe_world: StripeWorld) -> Iterator[FakeStripe]:
    with FakeStripe(stripe_world) as server:
        yield server


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    """A Slack-compatible webhook server on 127.0.0.1 recording every post."""
    with FakeSlack() as server:
        yield server


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()
