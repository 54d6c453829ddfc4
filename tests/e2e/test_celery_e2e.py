"""THE end-to-end test of a night: real `retention worker` processes, real Redis and PostgreSQL, two accounts
served by local Stripe servers, Slack digests received by local webhook servers.

Workers run as subprocesses (their own process group) so a test can SIGKILL one mid-sync the way a lost
machine would, and every test stops what it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from integrations.stripe.models import StripeCustomer, StripeInvoice, StripeInvoiceLine, StripeSubscription
from metrics.ledger import ClassifiedLine
from metrics.runs import MetricRun
from tests.support.redis_db import reset
from tests.support.slack_server import FakeSlack
from worker.accounts import connect_account
from worker.celery_app import TASK_NIGHTLY_ALL, make_celery
from worker.cli.main import app
from worker.demo.sample import build_sample_world
from worker.demo.stripe_server import FakeStripe
from worker.metrics_run import compute_metrics
from worker.models import Account
from worker.runlog import NightlyRun
from worker.secrets import Secret
from worker.settings import get_settings

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

KEY = "sk_test_123"
AS_OF = "2026-11-01"
END = date(2026, 11, 1)
RETENTION = str(Path(sys.executable).parent / "retention")


@pytest.fixture
def broker_url(redis_url: str) -> Iterator[str]:
    """The tests' own Redis database serves as broker and lock store (redis_url claimed and emptied it)."""
    yield redis_url
    reset(redis.Redis.from_url(redis_url))


@pytest.fixture
def env(
    pg_engine: Engine, pg_database_url: str, broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """One configuration for this process and the workers: PostgreSQL, Redis db 14, the test's secret key."""
    monkeypatch.setenv("RETENTION_DATABASE_URL", pg_database_url)
    monkeypatch.setenv("RETENTION_BROKER_URL", broker_url)
    monkeypatch.setenv("RETENTION_NIGHTLY_TIME_LIMIT", "40")
    return {**os.environ, "RETENTION_HOME": str(tmp_path / "worker-home")}


class Workers:
    """`retention worker` subprocesses, each in its own process group; all stopped at the end."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
        log_path = self.tmp_path / f"{name}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [
                    RETENTION,
                    "worker",
                    "--concurrency",
                    str(concurrency),
                    "--hostname",
                    f"{name}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((proc, log_path))
        wait_for(lambda: b" ready." in log_path.read_bytes() or proc.poll() is not None, 60, f"{name} ready")
        assert proc.poll() is None, log_path.read_text()[-3000:]
        return proc

    def log(self) -> str:
        return "\n".join(path.read_text(errors="replace") for _, path in self.procs)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """What a lost machine does: the worker and its pool processes die at once, nothing acknowledged."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        """The test is over and Redis db 14 is flushed after it: nothing needs a graceful shutdown."""
        for proc, _ in self.procs:
            if proc.poll() is None:
                self.kill(proc)


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(env, tmp_path)
    yield pool
    pool.stop_all()


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, workers: Workers | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tail = "\n" + workers.log()[-6000:] if workers is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")


def connect(engine: Engine, name: str, stripe: FakeStripe, slack: FakeSlack | None = None) -> Account:
    return connect_account(
        engine, get_settings(), name, Secret(KEY), stripe.url, "usd", Secret(slack.url) if slack else None, 0
    )


def enqueue(*names: str) -> list[str]:
    result = CliRunner().invoke(app, ["nightly", *names, "--enqueue", "--as-of", AS_OF, "--json"])
    assert result.exit_code == 0, result.output
    return [task["task_id"] for task in json.loads(result.stdout)["accounts"]]


def finished_runs(engine: Engine) -> list[NightlyRun]:
    """Runs that ended, well or not (a failed one shows its step and error in the assertion)."""
    with Session(engine) as session:
        return list(session.exec(select(NightlyRun).where(col(NightlyRun.finished_at).is_not(None))))


def assert_ok(runs: list[NightlyRun]) -> None:
    assert all(r.ok for r in runs), [(r.account_id, r.error) for r in runs]


def count(engine: Engine, table: Any, account_id: int | None) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(table).where(table.account_id == account_id)
        return session.exec(query).one()


@pytest.fixture
def stripes() -> Iterator[tuple[FakeStripe, FakeStripe]]:
    with (
        FakeStripe(build_sample_world(seed=3, customers=30, months=14, end=END)) as first,
        FakeStripe(build_sample_world(seed=4, customers=20, months=14, end=END)) as second,
    ):
        yield first, second


@pytest.fixture
def slacks() -> Iterator[tuple[FakeSlack, FakeSlack]]:
    with FakeSlack() as first, FakeSlack() as second:
        yield first, second


def test_a_night_for_two_accounts_lands_metrics_and_alerts(
    pg_engine: Engine,
    env: dict[str, str],
    workers: Workers,
    stripes: tuple[FakeStripe, FakeStripe],
    slacks: tuple[FakeSlack, FakeSlack],
) -> None:
    acme = connect(pg_engine, "acme", stripes[0], slacks[0])
    beta = connect(pg_engine, "beta", stripes[1], slacks[1])
    workers.start("w1")
    # what beat sends at RETENTION_NIGHTLY_AT: the fan-out, which queues one task per account
    make_celery().send_task(
        TASK_NIGHTLY_ALL, kwargs={"as_of": f"{AS_OF}T00:00:00+00:00", "trigger": "schedule"}
    )
    wait_for(lambda: len(finished_runs(pg_engine)) == 2, 90, "both nights to finish", workers)
    assert_ok(finished_runs(pg_engine))

    with Session(pg_engine) as session:
        runs = {r.account_id: r for r in session.exec(select(NightlyRun))}
        metric_runs = {m.account_id: m for m in session.exec(select(MetricRun))}
    assert set(runs) == set(metric_runs) == {acme.id, beta.id}
    task_ids = [str(r.task_id) for r in runs.values()]
    assert len(set(task_ids)) == 2  # one task per account
    assert all(
        r.trigger == "schedule" and list(r.steps) == ["sync", "rebuild", "metrics", "backtest", "alerts"]
        for r in runs.values()
    )
    for account, stripe in ((acme, stripes[0]), (beta, stripes[1])):
        assert account.id is not None
        assert count(pg_engine, StripeCustomer, account.id) == len(stripe.world.collections["customer"].by_id)
        # what the worker stored is what the metrics of the stored data are, recomputed here
        expected = compute_metrics(pg_engine, account, datetime(2026, 11, 1, tzinfo=UTC), store=False)
        assert metric_runs[account.id].payload["mrr"] == expected["mrr"] > 0
        assert metric_runs[account.id].as_of == END
        assert stripe.writes == []
    for slack, account in zip(slacks, (acme, beta), strict=True):
        assert account.id is not None
        alerts = runs[account.id].steps["alerts"]["detail"]
        assert alerts["at_risk"] > 0 and alerts["pending"] == 0
        assert len(slack.delivered) == alerts["messages"] >= 1
    log_lines = [json.loads(line) for line in workers.log().splitlines() if line.startswith("{")]
    finished = [line for line in log_lines if line["message"] == "nightly run finished"]
    assert sorted(line["task_id"] for line in finished) == sorted(task_ids)
    assert {line["account"] for line in finished} == {"acme", "beta"}


def test_a_worker_killed_mid_sync_is_redelivered_and_leaves_no_duplicates(
    pg_engine: Engine,
    env: dict[str, str],
    workers: Workers,
    stripes: tuple[FakeStripe, FakeStripe],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a short hard limit, hence a short visibility timeout (15 s), so the redelivery comes within the test
    env["RETENTION_NIGHTLY_TIME_LIMIT"] = "12"
    stripe = stripes[0]
    acme = connect(pg_engine, "acme", stripe)
    stripe.latency = 0.25  # a slow Stripe: the sync is still running when the worker dies
    first = workers.start("doomed", concurrency=1)
    (task_id,) = enqueue("acme")
    wait_for(lambda: stripe.request_count("/v1/invoices") >= 2, 60, "the sync to be under way")
    workers.kill(first)
    with Session(pg_engine) as session:
        (interrupted,) = session.exec(select(NightlyRun)).all()
    assert interrupted.finished_at is None and "metrics" not in interrupted.steps
    assert count(pg_engine, MetricRun, acme.id) == 0

    stripe.latency = 0.0
    workers.start("rescuer", concurrency=1)
    # the interrupted run is closed when the redelivered one starts; wait for both to have ended
    wait_for(lambda: len(finished_runs(pg_engine)) == 2, 90, "the redelivered night to finish", workers)

    with Session(pg_engine) as session:
        runs = session.exec(select(NightlyRun).order_by(NightlyRun.id)).all()  # type: ignore[arg-type]
    assert [r.task_id for r in runs] == [task_id, task_id]  # the same message, delivered twice
    assert runs[0].ok is False and "interrupted" in (runs[0].error or "")
    assert runs[1].ok is True
    world = stripe.world
    assert count(pg_engine, StripeCustomer, acme.id) == len(world.collections["customer"].by_id)
    assert count(pg_engine, StripeSubscription, acme.id) == len(world.collections["subscription"].by_id)
    assert count(pg_engine, StripeInvoice, acme.id) == len(world.collections["invoice"].by_id)
    assert count(pg_engine, StripeInvoiceLine, acme.id) == sum(len(v) for v in world.invoice_lines.values())
    assert count(pg_engine, MetricRun, acme.id) == 1
    with Session(pg_engine) as session:
        ledger_ids = session.exec(
            select(ClassifiedLine.line_id).where(ClassifiedLine.account_id == acme.id)
        ).all()
    assert len(ledger_ids) == len(set(ledger_ids)) > 0


def test_two_triggers_at_once_run_one_sync(
    pg_engine: Engine, env: dict[str, str], workers: Workers, stripes: tuple[FakeStripe, FakeStripe]
) -> None:
    stripe = stripes[0]
    connect(pg_engine, "acme", stripe)
    stripe.latency = 0.05  # long enough that the two tasks overlap on the two worker processes
    workers.start("w1", concurrency=2)
    first, second = enqueue("acme") + enqueue("acme")
    wait_for(lambda: len(finished_runs(pg_engine)) == 1, 90, "the night to finish", workers)
    assert_ok(finished_runs(pg_engine))
    wait_for(lambda: "account busy" in workers.log(), 30, "the second trigger to find the account busy")

    with Session(pg_engine) as session:
        runs = session.exec(select(NightlyRun)).all()
    assert len(runs) == 1 and runs[0].task_id in (first, second)
    assert stripe.request_count("/v1/customers?") == stripe.request_count("/v1/customers?limit=100") == 1
    lines = [json.loads(line) for line in workers.log().splitlines() if line.startswith("{")]
    busy = [line for line in lines if line["message"] == "account busy, the task retries later"]
    assert {line["task_id"] for line in busy} == {({first, second} - {runs[0].task_id}).pop()}


def test_two_schedulers_started_only_one_schedules(
    env: dict[str, str], broker_url: str, tmp_path: Path
) -> None:
    env = {**env, "RETENTION_NIGHTLY_AT": "03:45", "RETENTION_TIMEZONE": "Europe/Paris"}
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for name in ("beat1", "beat2"):
            log_path = tmp_path / f"{name}.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    [RETENTION, "beat"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            procs.append((proc, log_path))

        def holders() -> list[Path]:
            return [path for _, path in procs if b"beat: Acquired lock" in path.read_bytes()]

        wait_for(lambda: len(holders()) >= 1, 60, "a scheduler to take the lock")
        time.sleep(3)  # time enough for the second to take it too, if it could
        assert len(holders()) == 1
        assert all(proc.poll() is None for proc, _ in procs)  # the other one waits, it did not crash
        client = redis.Redis.from_url(broker_url)
        assert client.exists("retention:redbeat::lock")
        definition = json.loads(client.hget("retention:redbeat:nightly", "definition") or b"{}")
        assert definition["task"] == "retention.nightly.all"
        assert (str(definition["schedule"]["hour"]), str(definition["schedule"]["minute"])) == ("3", "45")
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
