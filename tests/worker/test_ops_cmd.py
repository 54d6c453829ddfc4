"""`retention nightly / worker / beat` from the command line: the whole night in-process on the embedded
SQLite without Redis, exit codes, and --enqueue putting one task per account on the broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pytest
import redis
from sqlmodel import Session, select
from typer.testing import CliRunner

from metrics.runs import MetricRun
from tests.support.slack_server import FakeSlack
from worker.celery_app import QUEUE, TASK_NIGHTLY_ACCOUNT
from worker.cli.main import app
from worker.db import ensure_schema
from worker.demo.sample import build_sample_world
from worker.demo.stripe_server import FakeStripe
from worker.runlog import NightlyRun
from worker.settings import get_settings

KEY = "sk_test_123"
OTHER_KEY = "sk_test_456"
NO_REDIS = "redis://127.0.0.1:1/14"  # nothing listens there


@pytest.fixture
def sample_stripe() -> Iterator[FakeStripe]:
    stripe_world = build_sample_world(seed=11, customers=25, months=14, end=date(2026, 11, 1))
    with FakeStripe(stripe_world, api_keys=(KEY, OTHER_KEY)) as server:
        yield server


def connect(
    cli: CliRunner, name: str, api_base: str, *extra: str, key: str = KEY, webhook: str | None = None
) -> None:
    env = {"STRIPE_API_KEY": key, **({"SLACK_WEBHOOK_URL": webhook} if webhook else {})}
    result = cli.invoke(app, ["connect", name, "--api-base", api_base, "--rps", "0", *extra], env=env)
    assert result.exit_code == 0, result.output


def test_nightly_runs_the_whole_night_in_process_without_redis(
    cli: CliRunner, sample_stripe: FakeStripe, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)  # not configured: the lock is in the database
    connect(cli, "acme", sample_stripe.url, "--slack-webhook", webhook=fake_slack.url)
    result = cli.invoke(app, ["nightly", "acme", "--as-of", "2026-11-01", "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["accounts"][0]
    assert run["ok"] and run["account"] == "acme"
    assert list(run["steps"]) == ["sync", "rebuild", "metrics", "backtest", "alerts"]
    assert run["steps"]["sync"]["detail"]["stored"]["customers"] == 25
    engine = ensure_schema(get_settings().database_url)
    with Session(engine) as session:
        metric_runs = session.exec(select(MetricRun)).all()
        nightly_runs = session.exec(select(NightlyRun)).all()
    assert [m.as_of for m in metric_runs] == [date(2026, 11, 1)]
    assert metric_runs[0].payload["mrr"] == run["steps"]["metrics"]["detail"]["mrr"]
    assert [(n.ok, n.trigger) for n in nightly_runs] == [(True, "manual")]
    alerts = run["steps"]["alerts"]["detail"]
    assert alerts["at_risk"] > 0 and alerts["sent"] == alerts["at_risk"] and alerts["pending"] == 0
    assert alerts["messages"] == len(fake_slack.delivered) >= 1
    assert sample_stripe.writes == []  # we never write to Stripe


def test_status_shows_the_last_nightly(
    cli: CliRunner, sample_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)
    connect(cli, "acme", sample_stripe.url)
    assert cli.invoke(app, ["nightly", "--as-of", "2026-11-01"]).exit_code == 0
    status = json.loads(cli.invoke(app, ["status", "acme", "--json"]).stdout)
    last = status["accounts"][0]["last_nightly"]
    assert last["ok"] is True and last["trigger"] == "manual"
    assert list(last["steps"]) == ["sync", "rebuild", "metrics", "backtest", "alerts"]


def test_a_failed_sync_exits_1_and_the_other_account_still_runs(
    cli: CliRunner, sample_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)
    connect(cli, "acme", sample_stripe.url)
    connect(cli, "beta", sample_stripe.url, key=OTHER_KEY)
    sample_stripe.api_keys.discard(KEY)  # acme's key is revoked after connect
    result = cli.invoke(app, ["nightly", "--as-of", "2026-11-01"])
    assert result.exit_code == 1
    acme_line, beta_line = result.stdout.splitlines()
    assert acme_line.startswith("acme: failed at sync:") and KEY not in acme_line
    assert beta_line.startswith("beta: done (sync ")
    engine = ensure_schema(get_settings().database_url)
    with Session(engine) as session:
        runs = {n.account_id: n for n in session.exec(select(NightlyRun))}
        stored = session.exec(select(MetricRun)).all()
    assert sorted(bool(r.ok) for r in runs.values()) == [False, True]
    assert len(stored) == 1 and runs[stored[0].account_id].ok  # metrics only for the account that synced


def test_enqueue_prints_one_task_per_account(
    cli: CliRunner, sample_stripe: FakeStripe, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    connect(cli, "acme", sample_stripe.url)
    connect(cli, "beta", sample_stripe.url)
    result = cli.invoke(app, ["nightly", "--enqueue", "--json"])
    assert result.exit_code == 0, result.output
    tasks = json.loads(result.stdout)["accounts"]
    assert [t["account"] for t in tasks] == ["acme", "beta"]
    queued = [json.loads(raw)["headers"] for raw in redis.Redis.from_url(redis_url).lrange(QUEUE, 0, -1)]
    assert sorted(h["id"] for h in queued) == sorted(t["task_id"] for t in tasks)
    assert {h["task"] for h in queued} == {TASK_NIGHTLY_ACCOUNT}
    assert sample_stripe.request_count("/v1/invoices") == 0  # queued, not run here


def test_enqueue_with_the_broker_down_is_refused_clearly(
    cli: CliRunner, sample_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", NO_REDIS)
    connect(cli, "acme", sample_stripe.url)
    result = cli.invoke(app, ["nightly", "--enqueue"])
    assert result.exit_code == 2
    assert "RETENTION_BROKER_URL" in result.stderr


def test_nightly_without_accounts_has_nothing_to_do_and_bad_input_is_refused(
    cli: CliRunner, sample_stripe: FakeStripe
) -> None:
    nothing = cli.invoke(app, ["nightly", "--json"])  # a fresh install's scheduled night is not a failure
    assert nothing.exit_code == 0 and "No account is connected yet" in nothing.stderr
    assert json.loads(nothing.stdout)["accounts"] == []
    connect(cli, "acme", sample_stripe.url)
    assert cli.invoke(app, ["nightly", "nobody"]).exit_code == 2
    bad = cli.invoke(app, ["nightly", "--as-of", "yesterday"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.stderr


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_worker_and_beat_refuse_a_broker_that_is_not_redis(
    cli: CliRunner, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", "amqp://guest@127.0.0.1//")
    result = cli.invoke(app, [command])
    assert result.exit_code == 2 and "redis://" in result.stderr
