"""The Celery app's promises (delivery, limits, schedule) and the tasks' plain functions, without a worker."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import redis
from celery.schedules import crontab
from sqlmodel import Session

import worker.tasks  # noqa: F401 - registers the tasks on the app
from tests.support.nightly_helpers import add_account
from worker.celery_app import (
    QUEUE,
    RETRY_POLICY,
    TASK_NIGHTLY_ACCOUNT,
    TASK_NIGHTLY_ALL,
    TASK_WATCH_ACCOUNT,
    TASK_WATCH_ALL,
    app,
    celery_config,
    enqueue_nightly,
    enqueue_watch,
    make_celery,
    parse_nightly_at,
)
from worker.db import ensure_schema
from worker.demo.stripe_server import FakeStripe
from worker.nightly import connected_account_ids, nightly_for_account_id
from worker.runlog import runs_of
from worker.settings import get_settings
from worker.watch import watch_account_id


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
