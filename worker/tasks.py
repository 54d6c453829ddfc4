"""Celery tasks: ids in, a plain function called, nothing else (the logic is tested without Celery).

Names are explicit and dotted so a rename of this module never orphans queued messages; retries and time
limits come from worker/celery_app.py, declared once. What a task may raise is decided in `guarded`: a busy
account retries later, a transient failure (dropped connection) is retried by autoretry with backoff, anything
else fails the task; in every case with a message that names the step, account and exception class only, so
neither Celery's log nor the result carries SQL or stored data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from celery import Task

from worker import errors
from worker.celery_app import (
    BUSY_RETRY_SECONDS,
    FANOUT_TIME_LIMIT,
    RETRY_POLICY,
    TASK_NIGHTLY_ACCOUNT,
    TASK_NIGHTLY_ALL,
    TASK_WATCH_ACCOUNT,
    TASK_WATCH_ALL,
    RunFailed,
    TransientFailure,
    app,
    busy_retries,
    enqueue_nightly,
    enqueue_watch,
)
from worker.deliveries import over_cap
from worker.locks import AccountBusy
from worker.logging import log_context
from worker.nightly import connected_account_ids, nightly_for_account_id
from worker.settings import get_settings
from worker.watch import watch_account_id

log = logging.getLogger(__name__)


@app.task(name=TASK_NIGHTLY_ACCOUNT, bind=True, **RETRY_POLICY)
def nightly_account(
    self: Task, account_id: int, as_of: str | None = None, trigger: str = "schedule"
) -> dict[str, Any]:
    """One account's night: sync -> rebuild -> metrics -> at-risk and Slack."""
    task_id, retries = self.request.id, self.request.retries or 0
    with log_context(task_id=task_id, account_id=account_id), guarded(self):
        given_up = over_cap(get_settings(), task_id, retries, account_id, trigger)
        if given_up is not None:
            log.error("nightly task given up", extra={"error": given_up["error"]})
            return given_up
        result = nightly_for_account_id(account_id, _when(as_of), trigger, task_id=task_id)
        if result.get("transient"):
            raise TransientFailure(f"nightly run of account {result['account']!r} failed: {result['error']}")
        return result


@app.task(
    name=TASK_NIGHTLY_ALL,
    bind=True,
    time_limit=FANOUT_TIME_LIMIT,
    soft_time_limit=FANOUT_TIME_LIMIT - 10,
    **RETRY_POLICY,
)
def nightly_all(self: Task, as_of: str | None = None, trigger: str = "schedule") -> list[str]:
    """The scheduled fan-out: one task per connected account, so accounts run in parallel across workers."""
    with log_context(task_id=self.request.id), guarded(self):
        return enqueue_nightly(self.app, connected_account_ids(), _when(as_of), trigger)


@contextmanager
def guarded(task: Task) -> Iterator[None]:
    """Maps what the block raises onto Celery: retry later, autoretry, or fail, with a data-free message."""
    try:
        yield
    except AccountBusy as busy:
        log.info("account busy, the task retries later", extra={"error": str(busy)})
        raise task.retry(exc=busy, countdown=BUSY_RETRY_SECONDS, max_retries=busy_retries()) from None
    except (TransientFailure, RunFailed):
        raise
    except Exception as exc:
        wrap: Callable[[str], Exception] = TransientFailure if errors.transient(exc) else RunFailed
        raise wrap(errors.failure_line(exc)) from None


@app.task(name=TASK_WATCH_ACCOUNT, bind=True, **RETRY_POLICY)
def watch_account(self: Task, account_id: int, trigger: str = "schedule") -> dict[str, Any]:
    """One same-day watch tick of one account (skipped when its nightly or another tick holds the lock)."""
    # a tick that finds the account busy is skipped inside (not retried): the next interval's tick reads the
    # same events; a redelivered tick is harmless (its events are applied once, its alerts sent once) up to
    # the delivery cap
    task_id, retries = self.request.id, self.request.retries or 0
    with log_context(task_id=task_id, account_id=account_id), guarded(self):
        return watch_account_id(account_id, trigger, task_id=task_id, retries=retries)


@app.task(
    name=TASK_WATCH_ALL,
    bind=True,
    time_limit=FANOUT_TIME_LIMIT,
    soft_time_limit=FANOUT_TIME_LIMIT - 10,
    **RETRY_POLICY,
)
def watch_all(self: Task, every: float = 900, trigger: str = "schedule") -> list[str]:
    """The scheduled fan-out: a tick per connected account, each expiring unstarted after `every` seconds."""
    with log_context(task_id=self.request.id), guarded(self):
        return enqueue_watch(self.app, connected_account_ids(), every, trigger)


def _when(as_of: str | None) -> datetime | None:
    return datetime.fromisoformat(as_of) if as_of else None
