"""The nightly chain of one account: steps in order, a failure recorded and stopping that account only,
one run per account at a time, every run in NightlyRun."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from metrics.dbapi import reader_of
from metrics.runs import MetricRun
from tests.support.nightly_helpers import add_account
from worker import nightly
from worker.accounts import disconnect_account
from worker.demo.stripe_server import FakeStripe
from worker.locks import AccountBusy, acquire, redis_key
from worker.logging import JsonFormatter
from worker.models import Account
from worker.nightly import run_nightly
from worker.nightly_steps import NightContext, Step, StepFailed
from worker.runlog import NightlyRun, runs_of, start_run
from worker.settings import Settings, get_settings
from worker.status_reads import last_nightly
from worker.syncing import run_sync

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


class Recorder:
    """Steps that note what they were given; `fail` makes the named step raise that exception."""

    def __init__(self, fail: dict[tuple[str, str], Exception] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or {}

    def step(self, name: str) -> Step:
        def run(ctx: NightContext) -> dict[str, Any]:
            self.calls.append((name, ctx.account.name))
            if (ctx.account.name, name) in self.fail:
                raise self.fail[(ctx.account.name, name)]
            return {"seen_as_of": ctx.as_of.date().isoformat()}

        return Step(name, run)

    def chain(self) -> list[Step]:
        return [self.step(n) for n in ("sync", "rebuild", "metrics", "alerts")]


@pytest.fixture
def settings() -> Settings:
    return get_settings()


def test_a_good_night_runs_every_step_in_order_and_is_recorded(engine: Engine, settings: Settings) -> None:
    acme = add_account(engine, settings, "acme")
    rec = Recorder()
    result = run_nightly(NightContext(engine, settings, acme, AS_OF), trigger="manual", steps=rec.chain())
    assert result.ok and not result.skipped
    assert rec.calls == [("sync", "acme"), ("rebuild", "acme"), ("metrics", "acme"), ("alerts", "acme")]
    with engine.connect() as conn:
        shown = last_nightly(reader_of(conn), acme.id or 0)
    assert shown is not None
    assert shown["ok"] is True and shown["trigger"] == "manual" and shown["error"] is None
    assert shown["finished_at"] is not None
    assert list(shown["steps"]) == ["sync", "rebuild", "metrics", "alerts"]
    assert shown["steps"]["metrics"]["detail"] == {"seen_as_of": "2026-11-01"}
    assert all(step["ok"] for step in shown["steps"].values())


def test_a_failing_step_stops_that_account_and_the_others_go_on(engine: Engine, settings: Settings) -> None:
    acme = add_account(engine, settings, "acme")
    beta = add_account(engine, settings, "beta")
    rec = Recorder(fail={("acme", "rebuild"): ValueError("invoice in_123 has no lines")})
    bad = run_nightly(NightContext(engine, settings, acme, AS_OF), steps=rec.chain())
    good = run_nightly(NightContext(engine, settings, beta, AS_OF), steps=rec.chain())
    assert [c for c in rec.calls if c[1] == "acme"] == [("sync", "acme"), ("rebuild", "acme")]
    assert [c[0] for c in rec.calls if c[1] == "beta"] == ["sync", "rebuild", "metrics", "alerts"]
    assert not bad.ok and bad.failed_step == "rebuild"
    assert bad.error == "rebuild: ValueError"  # the class only: an exception's text may carry stored data
    assert good.ok
    with engine.connect() as conn:
        shown = last_nightly(reader_of(conn), acme.id or 0)
    assert shown is not None and shown["ok"] is False
    assert list(shown["steps"]) == ["sync", "rebuild"]
    assert shown["steps"]["rebuild"] == {
        "ok": False,
        "seconds": shown["steps"]["rebuild"]["seconds"],
        "detail": {},
        "error": "ValueError",
    }


def test_a_sync_that_reports_failure_marks_the_night_failed(engine: Engine, settings: Settings) -> None:
    acme = add_account(engine, settings, "acme")
    rec = Recorder(fail={("acme", "sync"): StepFailed("Stripe kept answering 500 on /v1/invoices")})
    result = run_nightly(NightContext(engine, settings, acme, AS_OF), steps=rec.chain())
    assert not result.ok and result.failed_step == "sync"
    assert rec.calls == [("sync", "acme")]


def test_the_real_sync_step_failing_stops_the_real_chain(
    engine: Engine, settings: Settings, fake_stripe: FakeStripe
) -> None:
    """Default steps, a key the server rejects: the sync records its failure and nothing after it runs."""
    acme = add_account(engine, settings, "acme", api_base=fake_stripe.url, key="sk_test_revoked")
    result = run_nightly(NightContext(engine, settings, acme, AS_OF))
    assert not result.ok and result.failed_step == "sync"
    assert list(result.steps) == ["sync"]
    assert result.error is not None and "sk_test_revoked" not in result.error  # never the whole key
    with Session(engine) as session:
        assert session.exec(select(MetricRun)).first() is None
    with engine.connect() as conn:
        shown = last_nightly(reader_of(conn), acme.id or 0)
    assert shown is not None and shown["ok"] is False and list(shown["steps"]) == ["sync"]


def test_a_second_run_while_one_holds_the_account_is_refused_and_not_recorded(
    engine: Engine, settings: Settings
) -> None:
    acme = add_account(engine, settings, "acme")
    rec = Recorder()
    other = acquire(settings, engine, acme, "sync")  # a `retention sync acme` in progress
    try:
        with pytest.raises(AccountBusy, match="account 'acme' is busy: a sync started"):
            run_nightly(NightContext(engine, settings, acme, AS_OF), steps=rec.chain())
    finally:
        other.release()
    assert rec.calls == []
    with Session(engine) as session:
        assert runs_of(session, acme.id) == []  # type: ignore[arg-type]
    after = run_nightly(NightContext(engine, settings, acme, AS_OF), steps=rec.chain())
    assert after.ok and not after.skipped


def test_a_worker_and_a_command_meet_on_the_same_redis_lock(
    sqlite_engine: Engine, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    settings = get_settings()
    acme = add_account(sqlite_engine, settings, "acme")
    worker_night = acquire(settings, sqlite_engine, acme, "nightly", owner="another-task")
    try:
        with pytest.raises(AccountBusy):  # a plain sync, as `retention sync` would start it
            run_sync(sqlite_engine, settings, acme)
    finally:
        worker_night.release()
    assert redis.Redis.from_url(redis_url).get(redis_key(acme)) is None


def test_a_lost_lock_stops_the_chain_before_its_next_step_and_is_recorded(
    engine: Engine, settings: Settings
) -> None:
    acme = add_account(engine, settings, "acme")
    rec = Recorder()
    lock_path = f"{engine.url.database}.account-{acme.id}.lock"

    def lose_the_lock(ctx: NightContext) -> dict[str, Any]:
        """What an expiry during an outage or a terminated lock connection does, half-way through."""
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name LIKE 'rtn nightly %'"
                    )
                )
            time.sleep(0.2)
        else:
            os.unlink(lock_path)
        return {}

    chain = [rec.step("sync"), Step("rebuild", lose_the_lock), rec.step("metrics"), rec.step("alerts")]
    result = run_nightly(NightContext(engine, settings, acme, AS_OF), steps=chain)
    assert not result.ok and result.failed_step == "metrics"
    assert result.error == "metrics: not started, the account lock was lost (expired or taken over)"
    assert rec.calls == [("sync", "acme")]
    with engine.connect() as conn:
        shown = last_nightly(reader_of(conn), acme.id or 0)
    assert shown is not None and shown["ok"] is False and shown["error"] == result.error
    assert list(shown["steps"]) == ["sync", "rebuild"]


def _db_error(statement: str, orig: Exception) -> OperationalError:
    """What SQLAlchemy raises when the connection drops mid-statement: its text is the SQL and its values."""
    return OperationalError(statement, {"customer": "cus_SECRET", "amount": 4200}, orig)


def test_a_transient_error_retries_the_step_with_backoff(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nightly, "STEP_BACKOFF", (0.01, 0.02))
    acme = add_account(engine, settings, "acme")
    rec = Recorder()
    attempts: list[int] = []

    def flaky(ctx: NightContext) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) < 3:
            raise _db_error("INSERT INTO stripe_customer ...", ConnectionResetError("reset"))
        return {"ok": True}

    chain = [rec.step("sync"), Step("rebuild", flaky), rec.step("metrics")]
    result = run_nightly(NightContext(engine, settings, acme, AS_OF), steps=chain)
    assert result.ok and len(attempts) == 3
    assert [c[0] for c in rec.calls] == ["sync", "metrics"]


def test_a_step_still_failing_after_its_retries_is_recorded_without_sql_or_data(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nightly, "STEP_BACKOFF", (0.01, 0.02))
    acme = add_account(engine, settings, "acme")
    attempts: list[int] = []

    def down(ctx: NightContext) -> dict[str, Any]:
        attempts.append(1)
        raise _db_error("INSERT INTO stripe_invoice (raw) VALUES (%(raw)s)", ConnectionRefusedError("down"))

    chain = [Step("sync", down), Recorder().step("rebuild")]
    result = run_nightly(NightContext(engine, settings, acme, AS_OF), steps=chain)
    assert len(attempts) == nightly.STEP_ATTEMPTS
    assert not result.ok and result.transient and result.failed_step == "sync"
    assert result.error == "sync: OperationalError (database: ConnectionRefusedError)"
    with engine.connect() as conn:
        shown = last_nightly(reader_of(conn), acme.id or 0)
    assert shown is not None
    assert "INSERT" not in json.dumps(shown) and "cus_SECRET" not in json.dumps(shown)


def test_a_bug_is_not_retried(engine: Engine, settings: Settings) -> None:
    acme = add_account(engine, settings, "acme")
    rec = Recorder(fail={("acme", "rebuild"): KeyError("cus_SECRET")})
    result = run_nightly(NightContext(engine, settings, acme, AS_OF), steps=rec.chain())
    assert not result.transient and result.error == "rebuild: KeyError"  # the key may be stored data
    assert rec.calls == [("sync", "acme"), ("rebuild", "acme")]


def test_a_run_left_unfinished_by_a_dead_worker_is_closed_as_interrupted(
    engine: Engine, settings: Settings
) -> None:
    acme = add_account(engine, settings, "acme")
    dead = start_run(engine, acme.id, "schedule", task_id="killed-task")  # type: ignore[arg-type]
    run_nightly(NightContext(engine, settings, acme, AS_OF), steps=Recorder().chain())
    with Session(engine) as session:
        runs = runs_of(session, acme.id)  # type: ignore[arg-type]
    assert [r.id for r in runs][0] == dead and len(runs) == 2
    assert runs[0].ok is False and runs[0].finished_at is not None and "interrupted" in (runs[0].error or "")
    assert runs[1].ok is True


def test_log_lines_are_json_with_account_and_task_ids(sqlite_engine: Engine, settings: Settings) -> None:
    acme = add_account(sqlite_engine, settings, "acme")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("worker.nightly")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        run_nightly(
            NightContext(sqlite_engine, settings, acme, AS_OF), steps=Recorder().chain(), task_id="task-42"
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines][0] == "nightly run started"
    assert all(line["account"] == "acme" and line["task_id"] == "task-42" for line in lines)
    assert {line.get("step") for line in lines} >= {"sync", "rebuild", "metrics", "alerts"}
    assert lines[-1]["message"] == "nightly run finished" and lines[-1]["ok"] is True


def test_nightly_runs_are_deleted_with_their_account(engine: Engine, settings: Settings) -> None:
    acme = add_account(engine, settings, "acme")
    run_nightly(NightContext(engine, settings, acme, AS_OF), steps=Recorder().chain())
    disconnect_account(engine, "acme")
    with Session(engine) as session:
        assert session.exec(select(NightlyRun)).first() is None
        assert session.exec(select(Account)).first() is None
