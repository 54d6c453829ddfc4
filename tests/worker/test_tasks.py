"""The Celery app's promises (delivery, limits, schedule) and the tasks' plain functions, without a worker."""

from __future__ import annotations

import base64
import json
import pickle
from datetime import timedelta
from typing import Any

import pytest
import redis
from celery.exceptions import Retry
from celery.schedules import crontab
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

import worker.tasks  # registers the tasks on the app
from metrics.dbapi import reader_of
from tests.support.nightly_helpers import add_account
from worker.celery_app import (
    BUSY_RETRY_SECONDS,
    QUEUE,
    RETRY_POLICY,
    TASK_NIGHTLY_ACCOUNT,
    TASK_NIGHTLY_ALL,
    TASK_WATCH_ACCOUNT,
    TASK_WATCH_ALL,
    RunFailed,
    TransientFailure,
    app,
    celery_config,
    enqueue_nightly,
    enqueue_watch,
    make_celery,
    parse_nightly_at,
)
from worker.db import ensure_schema
from worker.deliveries import count_key
from worker.demo.stripe_server import FakeStripe
from worker.locks import AccountBusy
from worker.nightly import connected_account_ids, nightly_for_account_id
from worker.runlog import runs_of
from worker.settings import get_settings
from worker.status_reads import last_tick
from worker.tasks import guarded
from worker.watch import watch_account_id
from worker.watch_state import FAILED


def test_delivery_survives_a_lost_worker_and_redis_never_redelivers_a_running_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETENTION_NIGHTLY_TIME_LIMIT", "7200")
    conf = celery_config(get_settings())
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_time_limit"] == 7200
    assert conf["task_soft_time_limit"] < conf["task_time_limit"]
    assert conf["broker_transport_options"]["visibility_timeout"] > conf["task_time_limit"]


def test_broker_and_schedule_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", "redis://redis.internal:6380/3")
    monkeypatch.setenv("RETENTION_NIGHTLY_AT", "03:45")
    monkeypatch.setenv("RETENTION_TIMEZONE", "Europe/Paris")
    celery = make_celery()
    assert celery.conf.broker_url == "redis://redis.internal:6380/3"
    assert celery.conf.redbeat_redis_url == "redis://redis.internal:6380/3"
    assert celery.conf.timezone == "Europe/Paris"
    entry = celery.conf.beat_schedule["nightly"]
    assert entry["task"] == TASK_NIGHTLY_ALL
    assert entry["schedule"] == crontab(hour=3, minute=45)
    assert celery.conf.beat_scheduler == "redbeat.RedBeatScheduler"


def test_the_default_schedule_is_two_in_the_morning_utc() -> None:
    celery = make_celery()
    assert celery.conf.beat_schedule["nightly"]["schedule"] == crontab(hour=2, minute=0)
    assert celery.conf.timezone == "UTC"


@pytest.mark.parametrize("value", ["2am", "25:00", "02:60", ""])
def test_a_bad_nightly_time_is_refused_with_the_variable_named(value: str) -> None:
    with pytest.raises(ValueError, match="RETENTION_NIGHTLY_AT"):
        parse_nightly_at(value)


def test_a_bad_time_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_NIGHTLY_TIME_LIMIT", "an hour")
    with pytest.raises(ValueError, match="RETENTION_NIGHTLY_TIME_LIMIT"):
        celery_config(get_settings())


def test_tasks_have_explicit_names_and_one_retry_policy() -> None:
    account_task = app.tasks[TASK_NIGHTLY_ACCOUNT]
    fanout_task = app.tasks[TASK_NIGHTLY_ALL]
    for task in (account_task, fanout_task):
        assert task.max_retries == RETRY_POLICY["max_retries"]
        assert set(task.autoretry_for) == set(RETRY_POLICY["autoretry_for"])
    assert fanout_task.time_limit is not None and fanout_task.time_limit < app.conf.task_time_limit


def test_enqueue_puts_one_message_per_account_on_the_queue(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    ids = enqueue_nightly(make_celery(), [3, 5], trigger="enqueue")
    assert len(set(ids)) == 2
    client = redis.Redis.from_url(redis_url)
    messages = [json.loads(raw) for raw in client.lrange(QUEUE, 0, -1)]
    assert sorted(m["headers"]["id"] for m in messages) == sorted(ids)
    assert {m["headers"]["task"] for m in messages} == {TASK_NIGHTLY_ACCOUNT}
    bodies = [json.loads(base64.b64decode(m["body"])) for m in messages]
    assert sorted(b[1]["account_id"] for b in bodies) == [3, 5]
    assert {b[1]["trigger"] for b in bodies} == {"enqueue"}


def test_the_fanout_sees_every_connected_account() -> None:
    settings = get_settings()
    engine = ensure_schema(settings.database_url)
    first = add_account(engine, settings, "acme")
    second = add_account(engine, settings, "beta")
    assert connected_account_ids() == [first.id, second.id]


def test_a_task_for_a_disconnected_account_is_a_no_op(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    result = nightly_for_account_id(999, None, "schedule", task_id="t-1")
    assert result["skipped"] and result["error"] == "no such account"


def test_the_account_task_records_its_task_id_and_trigger(
    fake_stripe: FakeStripe, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain function a worker runs: the account's night lands in NightlyRun under the task's id."""
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    settings = get_settings()
    engine = ensure_schema(settings.database_url)
    # a key the server rejects: the sync fails fast with a 401 and the run is recorded as failed
    acme = add_account(engine, settings, "acme", api_base=fake_stripe.url, key="sk_test_wrong")
    result = nightly_for_account_id(acme.id, None, "schedule", task_id="task-7")  # type: ignore[arg-type]
    assert result["failed_step"] == "sync"
    with Session(engine) as session:
        runs = runs_of(session, acme.id)  # type: ignore[arg-type]
    assert [(r.task_id, r.trigger, r.ok) for r in runs] == [("task-7", "schedule", False)]


def test_redeliveries_are_counted_and_capped_then_recorded_with_the_reason(
    fake_stripe: FakeStripe, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same message delivered again and again (its worker killed each time) runs MAX times, then is given
    up and recorded; a Celery retry of it (a new message, retries + 1) is counted apart."""
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    monkeypatch.setenv("RETENTION_MAX_DELIVERIES", "2")
    settings = get_settings()
    engine = ensure_schema(settings.database_url)
    acme = add_account(engine, settings, "acme", api_base=fake_stripe.url, key="sk_test_wrong")
    task = app.tasks[TASK_NIGHTLY_ACCOUNT]
    outcomes = [task.apply(kwargs={"account_id": acme.id}, task_id="t-oom").get() for _ in range(3)]
    assert [o.get("failed_step") for o in outcomes[:2]] == ["sync", "sync"]  # ran (and failed on the key)
    assert outcomes[2]["given_up"] and outcomes[2]["error"].startswith("given up after 2 deliveries")
    with Session(engine) as session:
        runs = runs_of(session, acme.id)  # type: ignore[arg-type]
    assert [(r.task_id, r.ok) for r in runs] == [("t-oom", False)] * 3
    assert runs[-1].error == outcomes[2]["error"] and runs[-1].steps == {}
    retried = task.apply(kwargs={"account_id": acme.id}, task_id="t-oom", retries=1).get()
    assert retried.get("failed_step") == "sync"
    assert redis.Redis.from_url(redis_url).get(count_key("t-oom", 0)) == b"3"


class RecordingTask:
    """The one thing `guarded` asks of a Celery task: retry(exc=, countdown=, max_retries=)."""

    def __init__(self) -> None:
        self.retried: dict[str, Any] = {}

    def retry(self, **kwargs: Any) -> Retry:
        self.retried = kwargs
        return Retry(exc=kwargs["exc"], when=kwargs["countdown"])


def test_a_busy_account_makes_the_task_retry_later_for_as_long_as_a_night_may_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETENTION_NIGHTLY_TIME_LIMIT", "3600")
    task = RecordingTask()
    busy = AccountBusy("acme", None, "nightly")
    with pytest.raises(Retry), guarded(task):  # type: ignore[arg-type]
        raise busy
    assert task.retried["exc"] is busy and task.retried["countdown"] == BUSY_RETRY_SECONDS
    assert task.retried["max_retries"] * BUSY_RETRY_SECONDS > 3600
    assert pickle.loads(pickle.dumps(busy)).holder is None  # noqa: S301 - Celery pickles it, our own bytes


def test_a_failure_leaves_the_task_as_one_data_free_message(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dropped database connection becomes TransientFailure (autoretried), anything else RunFailed: the text
    Celery logs names the class, never the SQL or the values."""
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    boom = OperationalError("SELECT * FROM account WHERE id = %(id)s", {"id": "cus_SECRET"}, OSError("gone"))
    monkeypatch.setattr(worker.tasks, "nightly_for_account_id", lambda *a, **k: (_ for _ in ()).throw(boom))
    result = app.tasks[TASK_NIGHTLY_ACCOUNT].apply(kwargs={"account_id": 1}, task_id="t-db")
    # run eagerly, the autoretries run at once: after max_retries the task fails with the last one
    assert result.state == "FAILURE" and isinstance(result.result, TransientFailure)
    assert str(result.result) == "failed: OperationalError (database: OSError)"
    monkeypatch.setattr(worker.tasks, "nightly_for_account_id", lambda *a, **k: {}["cus_SECRET"])
    failed = app.tasks[TASK_NIGHTLY_ACCOUNT].apply(kwargs={"account_id": 1}, task_id="t-bug")
    assert failed.state == "FAILURE" and isinstance(failed.result, RunFailed)
    assert str(failed.result) == "failed: KeyError" and failed.result.__suppress_context__


def test_beat_ticks_the_watch_every_interval_and_each_tick_expires_within_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = celery_config(get_settings())["beat_schedule"]["watch"]  # default: every 15 minutes
    assert (entry["task"], entry["schedule"]) == (TASK_WATCH_ALL, timedelta(minutes=15))
    assert entry["options"]["expires"] == entry["kwargs"]["every"] == 900
    monkeypatch.setenv("RETENTION_WATCH_EVERY", "0")
    assert "watch" not in celery_config(get_settings())["beat_schedule"]  # 0 = off


def test_watch_ticks_are_queued_one_per_account_and_expire(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    ids = enqueue_watch(make_celery(), [3, 5], expires=600)
    client = redis.Redis.from_url(redis_url)
    messages = [json.loads(raw) for raw in client.lrange(QUEUE, 0, -1)]
    assert sorted(m["headers"]["id"] for m in messages) == sorted(ids)
    assert {m["headers"]["task"] for m in messages} == {TASK_WATCH_ACCOUNT}
    assert all(m["headers"]["expires"] for m in messages)  # an absolute time: not started by then, dropped
    for task in (app.tasks[TASK_WATCH_ACCOUNT], app.tasks[TASK_WATCH_ALL]):
        assert task.max_retries == RETRY_POLICY["max_retries"]


def test_a_tick_for_a_disconnected_account_is_a_no_op(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    result = watch_account_id(999, "schedule", task_id="t-2")
    assert result["outcome"] == "skipped" and result["error"] == "no such account"


def test_a_watch_tick_redelivered_past_the_cap_is_recorded_as_failed_not_run(
    fake_stripe: FakeStripe, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick whose worker keeps dying is capped like a night: the delivery past the cap reads nothing from
    Stripe and leaves a failed tick with the reason for `retention status`."""
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    monkeypatch.setenv("RETENTION_MAX_DELIVERIES", "2")
    settings = get_settings()
    engine = ensure_schema(settings.database_url)
    acme = add_account(engine, settings, "acme", api_base=fake_stripe.url)
    task = app.tasks[TASK_WATCH_ACCOUNT]
    outcomes = [task.apply(kwargs={"account_id": acme.id}, task_id="w-oom").get() for _ in range(2)]
    assert not any("given up" in (o["error"] or "") for o in outcomes)  # both ran
    requests = len(fake_stripe.requests)
    given_up = task.apply(kwargs={"account_id": acme.id}, task_id="w-oom").get()
    assert given_up["outcome"] == FAILED and given_up["error"].startswith("given up after 2 deliveries")
    assert "`retention watch --once NAME`" in given_up["error"]
    assert len(fake_stripe.requests) == requests  # not run
    with engine.connect() as conn:
        tick = last_tick(reader_of(conn), acme.id or 0)
    assert tick is not None and tick["outcome"] == FAILED and tick["error"] == given_up["error"]
