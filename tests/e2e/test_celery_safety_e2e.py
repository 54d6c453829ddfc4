"""Workers and commands on one account, with real `retention worker` processes, Redis and PostgreSQL: a
command is refused while a worker's night holds the account (and the other way round, the task waits), and a
task that keeps killing its worker process (an OOM kill) is given up after RETENTION_MAX_DELIVERIES and
recorded on the account with the reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tests.e2e import test_celery_e2e as celery_e2e
from tests.e2e.test_celery_e2e import RETENTION, Workers, connect, enqueue, finished_runs, wait_for
from worker.demo.stripe_server import FakeStripe
from worker.locks import Holder, holder_of
from worker.models import Account
from worker.runlog import NightlyRun
from worker.settings import get_settings

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

# the same workers, broker and Stripe servers as the end-to-end night (fixtures, found here by name)
broker_url, env, workers, stripes = (
    celery_e2e.broker_url,
    celery_e2e.env,
    celery_e2e.workers,
    celery_e2e.stripes,
)


def holder(engine: Engine, account: Account) -> Holder | None:
    return holder_of(get_settings(), engine, account)


def test_a_command_and_a_worker_never_run_one_account_at_once(
    pg_engine: Engine, env: dict[str, str], workers: Workers, stripes: tuple[FakeStripe, FakeStripe]
) -> None:
    stripe = stripes[0]
    acme = connect(pg_engine, "acme", stripe)
    stripe.latency = 0.3
    worker = workers.start("w1", concurrency=1)
    (task_id,) = enqueue("acme")
    wait_for(lambda: holder(pg_engine, acme) is not None, 60, "the worker's night to take the lock", workers)
    night = holder(pg_engine, acme)
    assert night is not None and night.purpose == "nightly" and night.owner == task_id
    assert night.pid != worker.pid  # the pool process that runs the task

    refused = subprocess.run([RETENTION, "sync", "acme"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("error: account 'acme' is busy: a nightly started ")
    assert f"(pid {night.pid}) is still running" in refused.stderr

    stripe.latency = 0.0
    wait_for(lambda: len(finished_runs(pg_engine)) == 1, 120, "the night to finish", workers)
    assert [r.ok for r in finished_runs(pg_engine)] == [True]

    # now a command holds the account: the queued night does not run beside it, it retries later
    stripe.latency = 0.3
    command = subprocess.Popen(
        [RETENTION, "sync", "acme", "--full"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: holder(pg_engine, acme) is not None, 60, "the command to take the lock")
        (waiting,) = enqueue("acme")

        def busy_logged() -> bool:
            lines = [json.loads(line) for line in workers.log().splitlines() if line.startswith("{")]
            return any(
                line["message"] == "account busy, the task retries later" and line.get("task_id") == waiting
                for line in lines
            )

        wait_for(busy_logged, 60, "the queued night to find the account busy", workers)
        with Session(pg_engine) as session:
            assert len(session.exec(select(NightlyRun)).all()) == 1  # nothing ran beside the command
    finally:
        stripe.latency = 0.0
        _, err = command.communicate(timeout=120)
    assert command.returncode == 0, err


def test_a_task_that_keeps_killing_its_worker_is_given_up_and_recorded(
    pg_engine: Engine, env: dict[str, str], workers: Workers, stripes: tuple[FakeStripe, FakeStripe]
) -> None:
    """The pool process dies mid-night each time (what the kernel's OOM killer does): the message comes back
    at once (reject on a lost worker), is counted, and past the cap is acknowledged and recorded as failed."""
    env["RETENTION_MAX_DELIVERIES"] = "2"
    stripe = stripes[0]
    acme = connect(pg_engine, "acme", stripe)
    stripe.latency = 0.3
    workers.start("w1", concurrency=1)
    (task_id,) = enqueue("acme")
    killed: list[int] = []
    for _ in range(2):

        def new_holder() -> bool:
            found = holder(pg_engine, acme)
            return found is not None and found.pid not in killed

        def recorded() -> bool:  # the delivery has started its run record, so killing it leaves one behind
            with Session(pg_engine) as session:
                runs = session.exec(select(NightlyRun)).all()
            return len(runs) == len(killed) + 1 and any(r.finished_at is None for r in runs)

        wait_for(new_holder, 60, "a delivery of the night to take the lock", workers)
        wait_for(recorded, 60, "the delivery to record its run", workers)
        found = holder(pg_engine, acme)
        assert found is not None and found.owner == task_id
        os.kill(found.pid, signal.SIGKILL)
        killed.append(found.pid)

    def given_up() -> bool:
        with Session(pg_engine) as session:
            return any(r.error and "given up" in r.error for r in session.exec(select(NightlyRun)))

    wait_for(given_up, 60, "the third delivery to be given up", workers)
    with Session(pg_engine) as session:
        runs = session.exec(select(NightlyRun).order_by(NightlyRun.id)).all()  # type: ignore[arg-type]
    assert {r.task_id for r in runs} == {task_id}
    last = runs[-1]
    assert last.ok is False and last.finished_at is not None
    assert last.error is not None and last.error.startswith("given up after 2 deliveries of this task")
    assert len(runs) == 3 and all(
        r.ok is False and r.finished_at for r in runs[:-1]
    )  # the killed ones, closed
    lines = [json.loads(line) for line in workers.log().splitlines() if line.startswith("{")]
    assert any(line["message"] == "nightly task given up" for line in lines)
