"""The plain DB-API reads `accounts` and `status` make (worker/fast_db.py): the same database, the same answer
and the same output as through the engine, on SQLite and PostgreSQL; read only; and the engine serves (and
migrates) whatever they cannot."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

import worker.fast_db
from integrations.stripe.models import SyncState
from metrics.dbapi import Reader, reader_of
from tests.support.stripe_rows import make_account, store
from worker.alert_state import AlertDelivery
from worker.cli.main import app
from worker.db import session_scope
from worker.demo import builders as b
from worker.fast_db import open_reader
from worker.models import Account
from worker.runlog import NightlyRun
from worker.status import account_status
from worker.watch_state import WatchTick

WHEN = datetime(2026, 11, 30, 2, 0, 7, 123456, tzinfo=UTC)


@pytest.fixture
def url(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine's database as RETENTION_DATABASE_URL names it, for the commands run in the test."""
    found = engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("RETENTION_DATABASE_URL", found)
    return found


@pytest.fixture
def fast(url: str) -> Iterator[Reader]:
    reader = open_reader(url)
    assert reader is not None  # migrated: the fast path serves
    yield reader
    reader.close()


def _fill(engine: Engine) -> tuple[Account, Account]:
    """Two accounts with a row in every table `status` reads: JSON, booleans, times with and without
    microseconds, NULLs."""
    acme = make_account(engine, "acme")
    beta = make_account(engine, "beta", currency="eur")
    store(
        engine,
        acme,
        [b.customer("cus_a", created=100), b.customer("cus_b", created=200), b.product("prod_1", "Pro")],
    )
    store(engine, acme, [b.customer("cus_b", deleted=True)])
    with session_scope(engine) as s:
        row = s.get(Account, beta.id)
        assert row is not None
        row.slack_webhook_encrypted, row.rps, row.display_name = "token", 2.5, "Béta GmbH"
        s.add(
            SyncState(
                account_id=acme.id or 0,
                mode="incremental",
                last_sync_at=1_764_547_200,
                last_sync_ok=False,
                last_error="HTTP 500: ünïcode",
                rejected=[{"id": "cus_x", "object": "customer", "error": "bad"}],
                checkpoint={"full": {"started": 5}},
                events_seen=[["evt_1", 1_764_547_100]],
            )
        )
        s.add(
            NightlyRun(
                account_id=acme.id or 0,
                started_at=WHEN,
                finished_at=WHEN + timedelta(minutes=3),
                ok=True,
                task_id="task-1",
                steps={"sync": {"ok": True, "seconds": 1.5, "detail": {"n": 3}, "error": None}},
            )
        )
        s.add(NightlyRun(account_id=acme.id or 0, started_at=WHEN.replace(microsecond=0) + timedelta(days=1)))
        s.add(
            AlertDelivery(
                account_id=acme.id or 0, last_attempt_at=WHEN, last_ok=False, revoked=True, pending=3
            )
        )
        s.add(AlertDelivery(account_id=beta.id or 0, last_sent_at=WHEN))
        s.add(
            WatchTick(
                account_id=acme.id or 0,
                at=WHEN,
                outcome="alerted",
                seconds=0.12345678,
                detail={"events": 4, "alerts": 1, "pending": 0},
            )
        )
    return acme, beta


def test_status_reads_the_same_through_the_fast_connection_and_the_engine(
    engine: Engine, fast: Reader
) -> None:
    acme, beta = _fill(engine)
    with engine.connect() as conn:
        through_engine = [account_status(reader_of(conn), a.id or 0, a.name) for a in (acme, beta)]
    assert [account_status(fast, a.id or 0, a.name) for a in (acme, beta)] == through_engine
    entry = through_engine[0]
    assert (entry["last_sync_ok"], entry["last_error"], entry["mode"]) == (
        False,
        "HTTP 500: ünïcode",
        "incremental",
    )
    assert entry["counts"]["customers"] == 2 and entry["counts"]["products"] == 1
    assert entry["deleted"] == {"customers": 1, "subscriptions": 0}
    assert entry["rejected"] == [{"id": "cus_x", "object": "customer", "error": "bad"}]
    assert entry["last_nightly"]["ok"] is None and entry["last_nightly"]["steps"] == {}  # the newer run
    assert entry["slack"]["revoked"] is True and entry["slack"]["ok"] is False
    assert entry["last_watch"]["seconds"] == 0.123 and entry["last_watch"]["events"] == 4
    assert through_engine[1]["last_sync_at"] is None and through_engine[1]["last_watch"] is None


def test_times_read_as_the_engine_types_them(engine: Engine, fast: Reader) -> None:
    """SQLite keeps these columns as naive text, PostgreSQL as timestamptz: both paths give what the ORM
    gave."""
    acme, _ = _fill(engine)
    with session_scope(engine) as s:
        delivery = s.get(AlertDelivery, acme.id)
        assert delivery is not None and delivery.last_attempt_at is not None
        expected = delivery.last_attempt_at.isoformat()
    shown = account_status(fast, acme.id or 0, acme.name)["slack"]
    assert shown["last_attempt_at"] == expected
    assert expected.startswith("2026-11-30T02:00:07.123456")


@pytest.mark.parametrize(
    "args", [["status"], ["status", "--json"], ["status", "beta"], ["accounts"], ["accounts", "--json"]]
)
def test_the_output_is_the_same_byte_for_byte(
    engine: Engine, url: str, cli: CliRunner, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    _fill(engine)
    fast = cli.invoke(app, args, terminal_width=100)
    monkeypatch.setattr(worker.fast_db, "open_reader", lambda _url: None)  # as if only the engine could serve
    slow = cli.invoke(app, args, terminal_width=100)
    assert fast.exit_code == slow.exit_code == 0, fast.output + slow.output
    assert fast.stdout == slow.stdout and "beta" in fast.stdout
    assert "token" not in fast.stdout  # the webhook token is never read, let alone shown


def test_the_reads_are_read_only(engine: Engine, fast: Reader) -> None:
    make_account(engine)
    with pytest.raises((sqlite3.OperationalError, psycopg.errors.ReadOnlySqlTransaction)):
        fast.rows("DELETE FROM account")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM account")).scalar() == 1


def test_a_schema_behind_the_newest_migration_is_left_to_the_engine(engine: Engine, url: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        assert open_reader(url) is None
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM alembic_version"))
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": _head()})


def _head() -> str:
    from worker.db_target import head_revision

    head = head_revision()
    assert head is not None
    return head


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    database = tmp_path / "absent.db"
    assert open_reader(f"sqlite:///{database}") is None
    assert not database.exists()


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///x.db?mode=ro", "mysql://u@h/db"]
)
def test_url_forms_only_the_engine_handles_are_left_to_it(url: str) -> None:
    assert open_reader(url) is None


def test_a_status_for_an_unknown_account_is_refused_on_the_fast_path(
    cli: CliRunner, engine: Engine, url: str
) -> None:
    make_account(engine)
    result = cli.invoke(app, ["status", "nope"])
    assert result.exit_code == 2 and "no account named 'nope'" in result.stderr


def test_a_database_that_is_down_is_refused_in_one_line(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    result = cli.invoke(app, ["accounts"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: cannot open the database (OperationalError): check RETENTION_DATABASE_URL"
    )
