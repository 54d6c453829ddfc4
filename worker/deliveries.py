"""How often a queued task was handed to a worker, so one that keeps killing its worker is given up.

Delivery is at-least-once (acks_late, reject on a lost worker): a task whose process dies goes back on the
queue. That saves a night from a lost machine, but a task that itself kills the process (out of memory on a
huge account) would come back forever, taking a worker down each time. Each delivery of a task id and retry
number is counted in Redis (the broker, so every worker sees the same count); past RETENTION_MAX_DELIVERIES
the task is acknowledged without running and recorded on the account as failed, with the reason.

Celery's own retries (a busy account, a transient failure) are new messages with a higher retry number: they
are counted apart, so only real redeliveries of one message add up.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import redis
from sqlalchemy.exc import IntegrityError

from worker import runlog
from worker.db import ensure_schema
from worker.settings import Settings

COUNT_KEEP_SECONDS = 7 * 24 * 3600  # longer than any redelivery chain; the key then expires


def count_key(task_id: str, retries: int) -> str:
    return f"retention:deliveries:{task_id}:{retries}"


def count_delivery(redis_url: str, task_id: str, retries: int) -> int:
    """This delivery's number (1 for the first) of the message (task_id, retries)."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=10)
    try:
        with client.pipeline() as pipe:
            pipe.incr(count_key(task_id, retries))
            pipe.expire(count_key(task_id, retries), COUNT_KEEP_SECONDS)
            count, _ = pipe.execute()
    finally:
        client.close()
    return int(count)


def give_up_reason(deliveries: int, job: str = "nightly") -> str:
    """Why a task was given up, and how to run it by hand once the cause is found (`retention JOB NAME`)."""
    return (
        f"given up after {deliveries - 1} deliveries of this task: its worker process died each time before "
        f"the {job} run finished (killed, out of memory?); see the worker logs, raise the memory or "
        f"RETENTION_MAX_DELIVERIES, then run `retention {job} NAME`"
    )


def delivery_over_cap(settings: Settings, task_id: str, retries: int, job: str) -> str | None:
    """The give-up reason when this delivery of the message is past RETENTION_MAX_DELIVERIES, else None."""
    deliveries = count_delivery(settings.retention_broker_url, task_id, retries)
    return give_up_reason(deliveries, job) if deliveries > settings.retention_max_deliveries else None


def over_cap(
    settings: Settings, task_id: str, retries: int, account_id: int, trigger: str
) -> dict[str, Any] | None:
    """None when this delivery may run; else records the give-up on the account and returns the result."""
    reason = delivery_over_cap(settings, task_id, retries, "nightly")
    if reason is None:
        return None
    engine = ensure_schema(settings.database_url)
    with suppress(IntegrityError):  # the account was disconnected meanwhile: nothing to record on
        runlog.record_given_up(engine, account_id, trigger, task_id, reason)
    return {"account_id": account_id, "ok": False, "given_up": True, "error": reason}
