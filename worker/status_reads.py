"""The reads `retention status` makes of the worker's own records: the last nightly run, the last Slack
delivery, the last same-day watch tick, each as `status --json` shows it.

The tables are defined beside the code that writes them (worker/runlog.py, worker/alert_state.py,
worker/watch_state.py), which needs SQLModel; these reads are plain DB-API queries (metrics/dbapi.py) kept
apart from them so that `status` starts without importing SQLAlchemy (README: start-up time). Every caller,
tests included, reads them here.
"""

from __future__ import annotations

from typing import Any

from metrics.dbapi import Reader

_LAST_NIGHTLY = (
    "SELECT started_at, finished_at, ok, trigger, task_id, steps, error FROM nightly_run"
    " WHERE account_id = ? ORDER BY started_at DESC, id DESC LIMIT 1"
)
_LAST_DELIVERY = (
    "SELECT last_attempt_at, last_ok, last_error, revoked, pending, last_sent_at FROM alert_delivery"
    " WHERE account_id = ?"
)
_LAST_TICK = (
    "SELECT at, outcome, ok, trigger, seconds, note, error, detail FROM watch_tick WHERE account_id = ?"
)


def _iso(db: Reader, value: Any) -> str | None:
    moment = db.moment(value)
    return None if moment is None else moment.isoformat()


def last_nightly(db: Reader, account_id: int) -> dict[str, Any] | None:
    """The newest nightly run of the account (worker/runlog.py), or None if it never ran."""
    row = db.row(_LAST_NIGHTLY, account_id)
    if row is None:
        return None
    started, finished, ok, trigger, task_id, steps, error = row
    return {
        "started_at": _iso(db, started),
        "finished_at": _iso(db, finished),
        "ok": db.flag(ok),
        "trigger": trigger,
        "task_id": task_id,
        "steps": db.json(steps),
        "error": error,
    }


def last_alert_status(db: Reader, account_id: int) -> dict[str, Any] | None:
    """The last Slack delivery of the account (worker/alert_state.py `AlertDelivery`), or None."""
    row = db.row(_LAST_DELIVERY, account_id)
    if row is None:
        return None
    attempt, ok, error, revoked, pending, sent = row
    return {
        "last_attempt_at": _iso(db, attempt),
        "ok": db.flag(ok),
        "error": error,
        "revoked": db.flag(revoked),
        "pending": pending,
        "last_sent_at": _iso(db, sent),
    }


def last_tick(db: Reader, account_id: int) -> dict[str, Any] | None:
    """The account's last watch tick (worker/watch_state.py `WatchTick`) as `last_watch`, or None."""
    row = db.row(_LAST_TICK, account_id)
    if row is None:
        return None
    at, outcome, ok, trigger, seconds, note, error, detail = row
    return {
        "at": _iso(db, at),
        "outcome": outcome,
        "ok": db.flag(ok),
        "trigger": trigger,
        "seconds": round(seconds, 3),
        "note": note,
        "error": error,
        **db.json(detail),
    }
