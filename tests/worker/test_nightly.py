"""The nightly chain of one account: steps in order, a failure recorded and stopping that account only,
one run per account at a time, every run in NightlyRun."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from metrics.runs import MetricRun
from tests.support.nightly_helpers import add_account
from worker.accounts import disconnect_account
from worker.demo.stripe_server import FakeStripe
from worker.locks import file_lock, redis_lock
from worker.logging import JsonFormatter
from worker.models import Account
from worker.nightly import run_nightly
from worker.nightly_steps import NightContext, Step, StepFailed
from worker.runlog import NightlyRun, last_nightly, runs_of, start_run
from worker.settings import Settings, get_settings

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
    with Session(engine) as session:
        shown = last_nightly(session, acme.id)  # type: ignore[arg-type]
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
    assert bad.error == "rebuild: ValueError: invoice in_123 has no lines"
    assert good.ok
    with Session(engine) as session:
        shown = last_nightly(session, acme.id)  # type: ignore[arg-type]
    assert shown is not None and shown["ok"] is False
    assert list(shown["steps"]) == ["sync", "rebuild"]
    assert shown["steps"]["rebuild"] == {
        "ok": False,
        "seconds": shown["steps"]["rebuild"]["seconds"],
        "detail": {},
        "error": "ValueError: invoice in_123 has no lines",
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
        shown = last_nightly(session, acme.id)  # type: ignore[arg-type]
    assert shown is not None and shown["ok"] is False and list(shown["steps"]) == ["sync"]


def test_a_second_trigger_while_one_runs_is_skipped_locally(engine: Engine, settings: Settings) -> None:
    acme = add_account(engine, settings, "acme")
    rec = Recorder()
    with file_lock(settings.home / "locks", acme.id) as held:  # type: ignore[arg-type]
        assert held
        result = run_nightly(NightContext(engine, settings, acme, AS_OF), steps=rec.chain())
    assert result.skipped and result.run_id is None
    assert rec.calls == []
    with Session(engine) as session:
        assert runs_of(session, acme.id) == []  # type: ignore[arg-type]


def test_a_second_trigger_while_one_runs_is_skipped_across_workers(
    sqlite_engine: Engine, settings: Settings, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    acme = add_account(sqlite_engine, settings, "acme")
    rec = Recorder()
    assert acme.id is not None
    with (
        redis_lock(redis_url, acme.id, owner="another-task") as held,
        caplog.at_level(logging.WARNING, logger="worker.nightly"),
    ):
        assert held
        result = run_nightly(
            NightContext(sqlite_engine, settings, acme, AS_OF, redis_url),
            steps=rec.chain(),
            task_id="this-task",
        )
    assert result.skipped and rec.calls == []
    assert any("skipped" in r.getMessage() for r in caplog.records)
    after = run_nightly(NightContext(sqlite_engine, settings, acme, AS_OF, redis_url), steps=rec.chain())
    assert after.ok and not after.skipped


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
