"""The Celery application: broker, delivery guarantees, time limits, retries and the nightly schedule.

Delivery is at-least-once by design: `acks_late` with `task_reject_on_worker_lost` means a task whose worker
dies (SIGKILL, a lost machine) goes back on the queue, and every step of a night is idempotent, so running it
twice is safe. With Redis, an unacknowledged message comes back only after the visibility timeout, and one
that is still running when the timeout passes would be delivered a second time: the timeout is therefore
derived from the hard time limit and always longer than the longest possible run. Prefetch 1 keeps a long
night from holding other accounts hostage behind it on one worker.

Configuration is read from the environment when the app is first configured (not at import), through the
`on_configure` signal, so a command or a test that sets the environment first is obeyed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import redis
from celery import Celery
from celery.schedules import crontab
from celery.signals import setup_logging, worker_process_init
from kombu.utils.url import maybe_sanitize_url

from worker.db import get_engine
from worker.errors import SafeMessage, Transient
from worker.logging import configure_logging
from worker.models import Account
from worker.settings import Settings, get_settings

TASK_NIGHTLY_ALL = "retention.nightly.all"
TASK_NIGHTLY_ACCOUNT = "retention.nightly.account"
TASK_WATCH_ALL = "retention.watch.all"
TASK_WATCH_ACCOUNT = "retention.watch.account"
QUEUE = "retention"
FANOUT_TIME_LIMIT = 120
BUSY_RETRY_SECONDS = 60  # a task whose account another run holds tries again this much later


class TransientFailure(Transient):
    """The night failed on a dropped connection even after its step retries: Celery retries it later."""


class RunFailed(SafeMessage):
    """The night failed for another reason: the task fails (the run log already says where and why)."""


# Retries, declared once for every task: only infrastructure blips (database or Redis unreachable, after the
# chain's own step retries) are retried by Celery; tasks.guarded turns them into TransientFailure. A Stripe
# failure is not: the sync retries Stripe itself and records the outcome on the account.
RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": (TransientFailure,),
    "retry_backoff": 30,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 5,
}


def busy_retries() -> int:
    """Enough waits of BUSY_RETRY_SECONDS to outlast the longest run holding the account (its time limit)."""
    return math.ceil(get_settings().retention_nightly_time_limit / BUSY_RETRY_SECONDS) + 2


def soft_time_limit(hard: int) -> int:
    """Leaves the run time to record its failure before the hard kill."""
    return hard - max(1, min(300, hard // 10))


def visibility_timeout(hard: int) -> int:
    """Longer than the longest run (the hard limit), else Redis hands a running task to a second worker."""
    return hard + max(2, hard // 4)


def parse_nightly_at(value: str) -> tuple[int, int]:
    """`HH:MM` (24-hour clock) -> (hour, minute)."""
    try:
        moment = datetime.strptime(value.strip(), "%H:%M")
    except ValueError:
        raise ValueError(
            f"RETENTION_NIGHTLY_AT={value!r} is not a time of day: use HH:MM (e.g. 02:00)"
        ) from None
    return moment.hour, moment.minute


def celery_config(settings: Settings) -> dict[str, Any]:
    hard = settings.retention_nightly_time_limit
    hour, minute = parse_nightly_at(settings.retention_nightly_at)
    vt = visibility_timeout(hard)
    broker = settings.retention_broker_url
    return {
        "broker_url": broker,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": vt,
            # look for abandoned messages often enough that they come back soon after the timeout
            "unacked_restore_interval": max(1, min(10, vt // 4)),
            "unacked_restore_throttle": 1,
        },
        "imports": ("worker.tasks",),
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": hard,
        "task_soft_time_limit": soft_time_limit(hard),
        "worker_hijack_root_logger": False,
        "timezone": settings.retention_timezone,
        "enable_utc": True,
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "beat_max_loop_interval": 30,
        "redbeat_redis_url": broker,
        "redbeat_key_prefix": "retention:redbeat:",
        # a second `retention beat` waits on this lock; it takes over within 150 s when the first one dies
        "redbeat_lock_timeout": 150,
        "beat_schedule": {
            "nightly": {
                "task": TASK_NIGHTLY_ALL,
                "schedule": crontab(hour=hour, minute=minute),
                "kwargs": {"trigger": "schedule"},
            },
            **watch_schedule(settings.retention_watch_every),
        },
    }


def watch_schedule(every_minutes: float) -> dict[str, Any]:
    """The same-day watch's beat entry: a fan-out every RETENTION_WATCH_EVERY minutes (none when 0).

    A fan-out (and each account's tick it queues) not started within one interval expires unstarted: a
    backlog never turns into a burst of ticks, the next interval's tick reads the same events.
    """
    if every_minutes <= 0:
        return {}
    every = timedelta(minutes=every_minutes)
    return {
        "watch": {
            "task": TASK_WATCH_ALL,
            "schedule": every,
            "kwargs": {"every": every.total_seconds()},
            "options": {"expires": every.total_seconds()},
        }
    }


def make_celery(settings: Settings | None = None) -> Celery:
    """A Celery app configured from `settings` now (used to enqueue from a command or a test)."""
    celery = Celery("retention", set_as_current=False)
    celery.config_from_object(celery_config(settings or get_settings()))
    return celery


app = Celery("retention")


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    sender.config_from_object(celery_config(get_settings()))


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """A forked pool process must not reuse the parent's database connections (they hang or corrupt):
    drop them from the pool without closing them, as SQLAlchemy advises for multiprocessing."""
    get_engine(get_settings().database_url).dispose(close=False)


@setup_logging.connect
def _json_logs(loglevel: int | str | None = None, **_: Any) -> None:
    """Connected, this replaces Celery's own log setup: workers write JSON lines like every command."""
    configure_logging(loglevel or "INFO")


def safe_url(url: str) -> str:
    """The URL without its password, for a message."""
    return str(maybe_sanitize_url(url))


def broker_unreachable(url: str, wait: float = 0.0) -> str | None:
    """Why the broker at `url` cannot be used, or None once it answers a PING.

    Tries for `wait` seconds (at least once, each try a few seconds at most), so a worker started beside Redis
    in a container can wait for it, while a worker pointed at nothing says so in seconds rather than retrying
    silently for the better part of an hour.
    """
    deadline = time.monotonic() + wait
    while True:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
            return None
        except redis.exceptions.RedisError as exc:
            problem = type(exc).__name__
        finally:
            client.close()
        if time.monotonic() >= deadline:
            return (
                f"cannot reach the broker at RETENTION_BROKER_URL={safe_url(url)} ({problem}): "
                f"start Redis or "
                f"fix the URL; RETENTION_BROKER_WAIT=SECONDS (or --wait-broker) waits for it at start"
            )
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def enqueue_accounts(
    settings: Settings, accounts: Sequence[Account], as_of: datetime | None
) -> list[dict[str, Any]]:
    """`retention nightly --enqueue`: one task per account, each named with the account it is for.

    Raises what the broker raises when it cannot be reached (the command says so).
    """
    ids = enqueue_nightly(make_celery(settings), [a.id for a in accounts if a.id is not None], as_of)
    return [{"account": a.name, "task_id": task_id} for a, task_id in zip(accounts, ids, strict=True)]


def enqueue_nightly(
    celery: Celery, account_ids: list[int], as_of: datetime | None = None, trigger: str = "enqueue"
) -> list[str]:
    """Puts one nightly task per account on the broker (accounts then run in parallel across workers)."""
    ids = []
    for account_id in account_ids:
        kwargs = {"account_id": account_id, "as_of": as_of.isoformat() if as_of else None, "trigger": trigger}
        # fail in seconds, not minutes, when the broker is down: the caller says so
        sent = celery.send_task(
            TASK_NIGHTLY_ACCOUNT,
            kwargs=kwargs,
            queue=QUEUE,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
        ids.append(sent.id)
    return ids


def enqueue_watch(
    celery: Celery, account_ids: list[int], expires: float, trigger: str = "schedule"
) -> list[str]:
    """One watch tick per account; each expires unstarted after `expires` seconds (one interval)."""
    return [
        celery.send_task(
            TASK_WATCH_ACCOUNT,
            kwargs={"account_id": account_id, "trigger": trigger},
            queue=QUEUE,
            expires=expires,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        ).id
        for account_id in account_ids
    ]
