"""The command line as an operator meets it: two runs of one account at once (one refused, exit 2, one line
naming the holder), a database failure mid-sync (one line, a clean last_error, the next run exact), and
errors without tracebacks unless asked. Real processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from tests.support.stripe_world import add_account, build_world, snapshot, world_totals
from worker.cli.main import app
from worker.db import ensure_schema
from worker.demo.stripe_server import FakeStripe
from worker.locks import holder_of
from worker.models import Account
from worker.settings import get_settings

RETENTION = str(Path(sys.executable).parent / "retention")
SQL_WORDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "%(", "cus_0", "in_0", "sk_test")


@pytest.fixture
def engine(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """This process and the commands it starts share one database; RETENTION_BROKER_URL is unset (the lock
    is then the database's)."""
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)
    return ensure_schema(db_url)


@pytest.fixture
def stripe() -> Iterator[FakeStripe]:
    with FakeStripe(build_world(customers=40, months=6)) as server:
        yield server


@pytest.fixture
def slow_stripe() -> Iterator[FakeStripe]:
    """3 s a request (87 requests, a few at once: over a minute): a sync still running while others meet it,
    even when a loaded machine takes seconds to start each of them; a test sets the latency to 0 to let it
    finish (a request already waiting ends within 3 s)."""
    with FakeStripe(build_world(customers=60, months=6), latency=3.0) as server:
        yield server


def retention(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RETENTION, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def the_error(stderr: str) -> str:
    """The one error line of a command's stderr (progress lines may come before it; nothing after it)."""
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def wait_for_holder(engine: Engine, account: Account, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while holder_of(get_settings(), engine, account) is None:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.02)


def test_two_syncs_of_one_account_one_is_refused_with_one_line(
    engine: Engine, slow_stripe: FakeStripe
) -> None:
    stripe = slow_stripe
    acme = add_account(engine, stripe.url, "acme")
    first = subprocess.Popen(
        [RETENTION, "sync", "acme"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_holder(engine, acme, first)
    for command in (["sync", "acme"], ["rebuild", "acme"], ["nightly", "acme"]):
        second = retention(*command)
        assert second.returncode == 2, second
        line = the_error(second.stderr)
        assert line.startswith("error: account 'acme' is busy: a sync started "), line
        assert f"(pid {first.pid}) is still running" in line and " UTC on " in line
        assert second.stdout == ""
        assert first.poll() is None, "the first sync ended too soon for this test: slow the server down"
    stripe.latency = 0.0
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    requests_of_one_sync = stripe.request_count()
    clean = add_account(engine, stripe.url, "clean")
    assert retention("sync", "clean").returncode == 0
    assert stripe.request_count() == 2 * requests_of_one_sync  # the refused runs read nothing from Stripe
    assert snapshot(engine, acme.id) == snapshot(engine, clean.id)  # type: ignore[arg-type]


def _status(name: str) -> dict[str, object]:
    result = retention("status", name, "--json")
    assert result.returncode == 0, result.stderr
    entry: dict[str, object] = json.loads(result.stdout)["accounts"][0]
    return entry


def test_a_database_failure_mid_sync_is_one_clean_line_recorded_and_the_next_run_is_exact(
    engine: Engine, stripe: FakeStripe
) -> None:
    """The invoice table is gone while the sync writes (renamed away, the error SQLAlchemy would print with
    its SQL and bound values); the command prints one line, records a clean last_error, and once the table
    is back the next run resumes to exactly the data of a clean sync."""
    acme = add_account(engine, stripe.url, "acme")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE stripe_invoice RENAME TO stripe_invoice_away"))
    failed = retention("sync", "acme")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE stripe_invoice_away RENAME TO stripe_invoice"))
    assert failed.returncode == 1
    line = the_error(failed.stderr)
    driver = "UndefinedTable" if engine.dialect.name == "postgresql" else "OperationalError"
    klass = "ProgrammingError" if engine.dialect.name == "postgresql" else "OperationalError"
    assert line == (
        f"error: sync of account 'acme' failed: {klass} (database: {driver}); "
        f"run again with --debug for the traceback"
    )
    recorded = _status("acme")
    assert recorded["last_sync_ok"] is False
    assert recorded["last_error"] == f"sync of account 'acme' failed: {klass} (database: {driver})"
    for word in SQL_WORDS:
        assert word not in failed.stderr + json.dumps(recorded)

    again = retention("sync", "acme")
    assert again.returncode == 0, again.stderr
    clean = add_account(engine, stripe.url, "clean")
    assert retention("sync", "clean").returncode == 0
    assert snapshot(engine, acme.id) == snapshot(engine, clean.id)  # type: ignore[arg-type]
    stored = _status("acme")
    assert stored["counts"] == world_totals(stripe.world) and stored["last_error"] is None


def test_the_traceback_is_shown_only_when_asked(engine: Engine, stripe: FakeStripe) -> None:
    add_account(engine, stripe.url, "acme")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE stripe_invoice RENAME TO stripe_invoice_away"))
    try:
        for asked in (retention("sync", "acme", env={"RETENTION_DEBUG": "1"}), retention("--debug", "sync")):
            assert asked.returncode == 1
            assert "Traceback (most recent call last)" in asked.stderr
            assert asked.stderr.strip().splitlines()[-1].startswith("error: sync of account 'acme' failed: ")
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE stripe_invoice_away RENAME TO stripe_invoice"))


@pytest.mark.postgres
def test_a_connection_terminated_mid_step_is_one_line_and_the_next_run_is_exact(
    pg_engine: Engine, pg_database_url: str, stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_terminate_backend on the sync's connection while it writes (held up by a table lock so that the
    connection is in use, not idle in the pool where a pre-ping would hide the loss)."""
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)
    monkeypatch.setenv("RETENTION_DATABASE_URL", pg_database_url)
    acme = add_account(pg_engine, stripe.url, "acme")
    killed: list[int] = []
    with pg_engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE stripe_invoice IN ACCESS EXCLUSIVE MODE"))
        proc = subprocess.Popen(
            [RETENTION, "sync", "acme"], env=dict(os.environ), stderr=subprocess.PIPE, text=True
        )
        threading.Thread(target=_terminate_the_waiting_writer, args=(pg_engine, killed), daemon=True).start()
        _, err = proc.communicate(timeout=120)
        blocker.rollback()
    assert killed, "no sync connection waited on the table lock"
    assert proc.returncode == 1
    assert the_error(err).startswith("error: sync of account 'acme' failed: OperationalError (database: ")
    recorded = _status("acme")
    assert str(recorded["last_error"]).startswith(
        "sync of account 'acme' failed: OperationalError (database: "
    )
    for word in SQL_WORDS:
        assert word not in err + json.dumps(recorded)
    assert retention("sync", "acme").returncode == 0
    clean = add_account(pg_engine, stripe.url, "clean")
    assert retention("sync", "clean").returncode == 0
    assert snapshot(pg_engine, acme.id) == snapshot(pg_engine, clean.id)  # type: ignore[arg-type]


def _terminate_the_waiting_writer(engine: Engine, killed: list[int]) -> None:
    deadline = time.monotonic() + 60
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalars()
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                killed.append(pid)
            conn.commit()
            if killed:
                return
            time.sleep(0.05)


def test_a_report_into_a_folder_that_cannot_exist_is_one_line_and_exit_2(
    cli: CliRunner, tmp_path: Path
) -> None:
    engine = ensure_schema(get_settings().database_url)
    add_account(engine, "http://127.0.0.1:9", "acme")
    (tmp_path / "a-file").write_text("not a folder")
    target = tmp_path / "a-file" / "reports" / "report.html"
    result = cli.invoke(app, ["report", "acme", "--out", str(target)])
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"error: cannot use {target.parent}: Not a directory; check that its folder"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RETENTION_NIGHTLY_TIME_LIMIT", "abc"),
        ("RETENTION_LOCK_TTL", "-1"),
        ("RETENTION_BROKER_URL", "amqp://guest@127.0.0.1//"),
        ("RETENTION_DATABASE_URL", "mysql://db/x"),
        ("RETENTION_SECRET_KEY", "not-a-key"),
        ("RETENTION_SIZE_BANDS", "big,small"),
        ("RETENTION_MAX_DELIVERIES", "0"),
        ("RETENTION_TIMEZONE", "Mars/Olympus"),
        ("RETENTION_RISK_SEAT_DROP", "2"),
    ],
)
@pytest.mark.parametrize("command", [["worker"], ["beat"], ["status"], ["sync"], ["nightly"], ["mrr"]])
def test_every_command_refuses_a_bad_setting_before_any_work(
    cli: CliRunner, command: list[str], variable: str, value: str
) -> None:
    result = cli.invoke(app, command, env={variable: value})
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: bad configuration: ")
    assert variable in result.stderr
    if variable == "RETENTION_SECRET_KEY":
        assert value not in result.stderr  # a key, even a wrong one, is never printed


@pytest.mark.postgres
def test_a_connection_terminated_inside_a_nightly_step_is_retried_and_the_night_succeeds(
    pg_engine: Engine, pg_database_url: str, stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same cut as above, inside `retention nightly`: the sync step is retried after a backoff (the
    chain's own retry, not the user's), resumes from its checkpoint, and the night ends well and exact."""
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)
    monkeypatch.setenv("RETENTION_DATABASE_URL", pg_database_url)
    acme = add_account(pg_engine, stripe.url, "acme")
    killed: list[int] = []
    with pg_engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE stripe_invoice IN ACCESS EXCLUSIVE MODE"))
        proc = subprocess.Popen(
            [RETENTION, "nightly", "acme", "--json"], env=dict(os.environ), stdout=subprocess.PIPE, text=True
        )
        _terminate_the_waiting_writer(pg_engine, killed)
        blocker.rollback()
        out, _ = proc.communicate(timeout=120)
    assert killed and proc.returncode == 0, out
    (run,) = json.loads(out)["accounts"]
    assert run["ok"] and list(run["steps"]) == ["sync", "rebuild", "metrics", "backtest", "alerts"]
    assert run["steps"]["sync"]["seconds"] >= 2  # the first try failed, the second came after the backoff
    clean = add_account(pg_engine, stripe.url, "clean")
    assert retention("sync", "clean").returncode == 0
    assert snapshot(pg_engine, acme.id) == snapshot(pg_engine, clean.id)  # type: ignore[arg-type]
