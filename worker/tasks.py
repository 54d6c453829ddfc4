"""Celery tasks: ids in, a plain function called, nothing else (the logic is tested without Celery).

Names are explicit and dotted so a rename of this module never orphans queued messages; retries and time
limits come from worker/celery_app.py, declared once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import Task

from worker.celery_app import (
    FANOUT_TIME_LIMIT,
    RETRY_POLICY,
    TASK_NIGHTLY_ACCOUNT,
    TASK_NIGHTLY_ALL,
    TASK_WATCH_ACCOUNT,
    TASK_WATCH_ALL,
    app,
    enqueue_nightly,
    enqueue_watch,
)
from worker.logging import log_context
from worker.nightly import connected_account_ids, nightly_for_account_id
from worker.watch import watch_account_id


@app.task(name=TASK_NIGHTLY_ACCOUNT, bind=True, **RETRY_POLICY)
def nightly_account(
    self: Task, account_id: int, as_of: str | None = None, trigger: str = "schedule"
) -> dict[str, Any]:
    """One account's night: sync -> rebuild -> metrics -> at-risk and Slack."""
    with log_context(task_id=self.request.id, account_id=account_id):
        return nightly_for_account_id(account_id, _when(as_of), trigger, task_id=self.request.id)


@app.task(
    name=TASK_NIGHTLY_ALL,
    bind=True,
    time_limit=FANOUT_TIME_LIMIT,
    soft_time_limit=FANOUT_TIME_LIMIT - 10,
    **RETRY_POLICY,
)
def nightly_all(self: Task, as_of: str | None = None, trigger: str = "schedule") -> list[str]:
    """The scheduled fan-out: one task per connected account, so accounts run in parallel across workers."""
    with log_context(task_id=self.request.id):
        return enqueue_nightly(self.app, connected_account_ids(), _when(as_of), trigger)


@app.task(name=TASK_WATCH_ACCOUNT, bind=True, **RETRY_POLICY)
def watch_account(self: Task, account_id: int, trigger: str = "schedule") -> dict[str, Any]:
    """One same-day watch tick of one account (skipped when its nightly or another tick holds the lock)."""
    with log_context(task_id=self.request.id, account_id=account_id):
        return watch_account_id(account_id, trigger, task_id=self.request.id)


@app.task(
    name=TASK_WATCH_ALL,
    bind=True,
    time_limit=FANOUT_TIME_LIMIT,
    soft_time_limit=FANOUT_TIME_LIMIT - 10,
    **RETRY_POLICY,
)
def watch_all(self: Task, every: float = 900, trigger: str = "schedule") -> list[str]:
    """The scheduled fan-out: a tick per connected account, each expiring unstarted after `every` seconds."""
    with log_context(task_id=self.request.id):
        return enqueue_watch(self.app, connected_account_ids(), every, trigger)


def _when(as_of: str | None) -> datetime | None:
    return datetime.fromisoformat(as_of) if as_of else None
