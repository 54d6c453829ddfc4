"""The same-day watch end to end: `retention watch` and a beat-driven tick on a real worker, against the local
Stripe server and a local Slack webhook.

The account (tests/support/watch_world.py): customer k pays (k + 1) x $10; the default urgent floor (top fifth
of ten customers) is $90, so customer 9 ($100) is urgent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from metrics.calendar import utc_now
from tests.e2e.test_celery_e2e import Workers, wait_for
from tests.support.redis_db import reset
from tests.support.slack_server import Answer, FakeSlack
from tests.support.watch_world import build_paying_world, connect_synced, schedule_cancel
from worker.cli.main import app
from worker.db import ensure_schema
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.models import Account
from worker.nightly import run_nightly
from worker.nightly_steps import DEFAULT_STEPS, NightContext, Step
from worker.settings import get_settings
from worker.watch_state import WatchTick

pytestmark = [pytest.mark.slow]

RETENTION = str(Path(sys.executable).parent / "retention")


@pytest.fixture
def db() -> Engine:
    """The database the commands use (this test's RETENTION_DATABASE_URL)."""
    return ensure_schema(get_settings().database_url)


@pytest.fixture
def stripe_world() -> StripeWorld:
    return build_paying_world(names={9: "Nine & <Sons>"})


def watch_once(cli: CliRunner) -> str:
    result = cli.invoke(app, ["watch", "--once"])
    assert result.exit_code == 0, result.output
    return result.stdout


def named(payload: dict) -> str:
    return "\n".join(b["text"]["text"] for b in payload["blocks"])


def test_watch_once_alerts_once_and_the_nightly_does_not_repeat_it(
    db: Engine, stripe_world: StripeWorld, fake_stripe: FakeStripe, fake_slack: FakeSlack, cli: CliRunner
) -> None:
    connect_synced(
        db, fake_stripe.url, fake_slack.url, rebuild=False
    )  # a full sync, as `retention sync` leaves it
    assert "quiet" in watch_once(cli) and fake_slack.posts == []  # a quiet tick posts nothing

    schedule_cancel(stripe_world, 9)
    out = watch_once(cli)
    assert "1 urgent alert posted" in out, out
    assert len(fake_slack.delivered) == 1
    text = named(fake_slack.delivered[0])
    assert "Nine &amp; &lt;Sons&gt;" in text and "`cus_00009`" in text and "*cancel_scheduled*" in text
    status = json.loads(cli.invoke(app, ["status", "--json"]).stdout)["accounts"][0]["last_watch"]
    assert (status["outcome"], status["events"], status["alerts"], status["requests"]) == ("alerted", 1, 1, 2)
    shown = " ".join(cli.invoke(app, ["status"]).stdout.split())  # wrapped to the terminal's width
    assert ": alerted, 1 new event, 1 urgent alert, 0 waiting for Slack" in shown
    quiet = json.loads(cli.invoke(app, ["watch", "--once", "--json"]).stdout)["ticks"]
    assert [(t["account"], t["outcome"], t["requests"], t["alerts"]) for t in quiet] == [
        ("acme", "quiet", 1, 0)
    ]

    nightly = cli.invoke(app, ["nightly"])
    assert nightly.exit_code == 0, nightly.output
    assert len(fake_slack.delivered) == 2
    digest = named(fake_slack.delivered[1])
    assert "Already alerted today" in digest and "*cancel_scheduled*" not in digest  # listed, not repeated
    assert "quiet" in watch_once(cli) and len(fake_slack.posts) == 2


def test_a_tick_during_the_nightly_of_the_account_is_skipped(
    db: Engine, stripe_world: StripeWorld, fake_stripe: FakeStripe, fake_slack: FakeSlack, cli: CliRunner
) -> None:
    account = connect_synced(db, fake_stripe.url, fake_slack.url)
    schedule_cancel(stripe_world, 9)
    inside, release = threading.Event(), threading.Event()

    def hold(_: NightContext) -> dict[str, bool]:
        inside.set()
        assert release.wait(30)
        return {}

    context = NightContext(db, get_settings(), account, utc_now())
    steps = [DEFAULT_STEPS[0], Step("hold", hold), *DEFAULT_STEPS[1:]]
    night = threading.Thread(target=run_nightly, args=(context,), kwargs={"steps": steps})
    night.start()
    try:
        assert inside.wait(30)
        out = watch_once(cli)
        assert "skipped" in out and "lock" in out
    finally:
        release.set()
        night.join(60)
    # the nightly applied the event and alerted it in its digest; the tick after it has nothing to add
    assert "quiet" in watch_once(cli)
    assert sum("`cus_00009`" in named(p) for p in fake_slack.delivered) == 1


def test_slack_down_then_up_delivers_exactly_once(
    db: Engine, stripe_world: StripeWorld, fake_stripe: FakeStripe, fake_slack: FakeSlack, cli: CliRunner
) -> None:
    connect_synced(db, fake_stripe.url, fake_slack.url)
    fake_slack.script(*[Answer(503, "unavailable")] * 3)  # the first post and both retries fail
    schedule_cancel(stripe_world, 9)
    down = cli.invoke(app, ["watch", "--once"])
    assert down.exit_code == 1 and "1 waiting for Slack" in down.stdout, down.output
    assert fake_slack.delivered == []
    assert "1 urgent alert posted" in watch_once(cli)
    assert "quiet" in watch_once(cli)
    assert len(fake_slack.delivered) == 1 and "`cus_00009`" in named(fake_slack.delivered[0])


def test_watch_without_once_ticks_until_stopped(
    db: Engine, fake_stripe: FakeStripe, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    connect_synced(db, fake_stripe.url, fake_slack.url)
    env = {**os.environ, "RETENTION_WATCH_EVERY": "0.01"}
    log = tmp_path / "watch.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([RETENTION, "watch"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: log.read_text().count("quiet") >= 2, 60, "two ticks")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_watch_off_refuses_the_loop(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_WATCH_EVERY", "0")
    result = cli.invoke(app, ["watch"])
    assert result.exit_code == 2 and "RETENTION_WATCH_EVERY=0" in result.stderr


@pytest.mark.postgres
@pytest.mark.redis
def test_beat_drives_a_worker_tick_on_real_redis(
    pg_engine: Engine,
    pg_database_url: str,
    redis_url: str,
    stripe_world: StripeWorld,
    fake_stripe: FakeStripe,
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETENTION_DATABASE_URL", pg_database_url)
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    env = {
        **os.environ,
        "RETENTION_HOME": str(tmp_path / "worker-home"),
        "RETENTION_WATCH_EVERY": "0.1",  # every 6 s
    }
    account = connect_synced(pg_engine, fake_stripe.url, fake_slack.url)
    schedule_cancel(stripe_world, 9)
    workers = Workers(env, tmp_path)
    beat_log = tmp_path / "beat.log"
    try:
        workers.start("w1")
        with beat_log.open("wb") as out:
            beat = subprocess.Popen(
                [RETENTION, "beat"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(
            lambda: _last_tick(pg_engine, account) == "alerted", 90, "a scheduled tick to alert", workers
        )
        assert len(fake_slack.delivered) == 1 and "`cus_00009`" in named(fake_slack.delivered[0])
        wait_for(lambda: _last_tick(pg_engine, account) == "quiet", 60, "the next tick", workers)
        assert len(fake_slack.posts) == 1
        definition = json.loads(
            redis.Redis.from_url(redis_url).hget("retention:redbeat:watch", "definition") or b"{}"
        )
        assert definition["task"] == "retention.watch.all" and definition["options"]["expires"] == 6.0
    finally:
        workers.stop_all()
        if "beat" in locals() and beat.poll() is None:
            os.killpg(beat.pid, signal.SIGKILL)
            beat.wait(10)
        reset(redis.Redis.from_url(redis_url))


def _last_tick(engine: Engine, account: Account) -> str | None:
    with Session(engine) as session:
        row = session.get(WatchTick, account.id)
        return row.outcome if row else None
