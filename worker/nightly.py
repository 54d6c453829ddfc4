"""The night of one account: sync -> rebuild -> metrics -> backtest -> at-risk and Slack, as one locked chain.

The steps run in order in one process under the account's lock, rather than as separate Celery tasks, so
the lock spans the whole chain and a redelivered task simply reruns it: every step is idempotent (upserts by
Stripe id, snapshots keyed by day, alerts keyed by fingerprint). Accounts run in parallel because each account
is its own task. A failing step is recorded with its error and stops that account's chain (metrics over a
half-synced account would be wrong, an alert over stale metrics misleading); the run is then marked failed.

A dropped database connection or a Redis reset inside a step is retried there, with backoff, before the chain
gives up; a night that still failed that way is marked `transient`, so a queued task retries it later.
Before each step the chain checks that the account's lock is still its own: a lost lock (expired during an
outage, taken over) stops the chain and is recorded, rather than running beside the next holder. Errors are
recorded as the step, the account and the exception class (worker/errors.py), never the exception's text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from metrics.calendar import utc_now
from worker import errors, runlog
from worker.accounts import queued_account
from worker.db import ensure_schema
from worker.locks import AccountBusy, HeldLock, account_lock
from worker.logging import log_context
from worker.models import Account
from worker.nightly_steps import DEFAULT_STEPS, NightContext, Step
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)

STEP_ATTEMPTS = 3  # tries of one step on a transient error before the chain fails
STEP_BACKOFF = (2.0, 30.0)  # seconds: first wait, longest wait (doubling in between)


@dataclass
class NightlyResult:
    account: str
    account_id: int
    ok: bool
    skipped: bool = False
    run_id: int | None = None
    failed_step: str | None = None
    error: str | None = None
    transient: bool = False  # the failure was a dropped connection: a queued task retries the night later
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_nightly(
    context: NightContext,
    trigger: str = "manual",
    *,
    task_id: str | None = None,
    steps: Sequence[Step] | None = None,
    lock_ttl: float | None = None,
) -> NightlyResult:
    """Runs the account's chain under its lock; raises AccountBusy when another run holds it (nothing is
    recorded then: the other run is the one that counts).

    The lock is the one `sync` and `rebuild` take (worker/locks.py: Redis when RETENTION_BROKER_URL is set,
    else the database), so a command-line night, a worker's night and a plain sync never overlap.
    """
    account = context.account
    assert account.id is not None
    chain = list(steps if steps is not None else DEFAULT_STEPS)
    with (
        log_context(account=account.name, account_id=account.id, task_id=task_id),
        account_lock(
            context.settings, context.engine, account, "nightly", owner=task_id, ttl=lock_ttl
        ) as lock,
    ):
        return _run_chain(context, chain, trigger, task_id, lock)


def run_here(
    engine: Engine, settings: Settings, accounts: Iterable[Account], as_of: datetime | None
) -> list[NightlyResult]:
    """`retention nightly` without --enqueue: each account's night in turn, in this process.

    An account another run holds is skipped with the refusal as its error (the command exits 2 for it after
    the others ran). Without `as_of`, each account's night is as of its own start.
    """
    results = []
    for account in accounts:
        assert account.id is not None
        try:
            night = run_nightly(NightContext(engine, settings, account, as_of or utc_now()), trigger="manual")
        except AccountBusy as busy:
            night = NightlyResult(account.name, account.id, ok=True, skipped=True, error=str(busy))
        results.append(night)
    return results


def runs_json(results: Iterable[NightlyResult]) -> dict[str, Any]:
    """`retention nightly --json`: every account's run under `accounts` (the envelope of every multi-account
    command), the failed ones with the step that stopped them."""
    return {"accounts": [r.to_dict() for r in results]}


def _run_chain(
    context: NightContext, chain: list[Step], trigger: str, task_id: str | None, lock: HeldLock
) -> NightlyResult:
    account = context.account
    assert account.id is not None
    run_id = runlog.start_run(context.engine, account.id, trigger, task_id)
    result = NightlyResult(account=account.name, account_id=account.id, ok=True, run_id=run_id)
    log.info("nightly run started", extra={"trigger": trigger, "run_id": run_id})
    for step in chain:
        if not lock.still_held():  # expired or taken over: the next holder runs this step, not us
            result.ok, result.failed_step = False, step.name
            result.error = f"{step.name}: not started, the account lock was lost (expired or taken over)"
            log.error("nightly run stopped: the account lock was lost", extra={"step": step.name})
            break
        started = time.monotonic()
        detail, failure = run_step(context, step, lock)
        seconds = time.monotonic() - started
        error = None if failure is None else errors.describe(failure)
        runlog.record_step(context.engine, run_id, step.name, error is None, seconds, detail, error)
        result.steps[step.name] = {
            "ok": error is None,
            "seconds": round(seconds, 3),
            "detail": detail,
            "error": error,
        }
        if failure is not None:
            log.error("nightly step failed", extra={"step": step.name, "error": error})
            result.ok, result.failed_step, result.error = False, step.name, f"{step.name}: {error}"
            result.transient = errors.transient(failure)
            break
        log.info("nightly step done", extra={"step": step.name, "seconds": round(seconds, 3)})
    runlog.finish_run(context.engine, run_id, result.ok, result.error)
    log.info("nightly run finished", extra={"ok": result.ok, "run_id": run_id})
    return result


def run_step(context: NightContext, step: Step, lock: HeldLock) -> tuple[dict[str, Any], Exception | None]:
    """The step's summary, or the exception that ended it after retries.

    A transient failure (a dropped database connection, Redis reset: worker/errors.py) is retried with
    exponential backoff, STEP_ATTEMPTS times in all, as long as the lock is still ours; steps are idempotent
    (upserts, snapshots by day, alerts by fingerprint), so a retry redoes only what did not land.
    """
    retrying = Retrying(
        retry=retry_if_exception(lambda exc: errors.transient(exc) and lock.still_held()),
        stop=stop_after_attempt(STEP_ATTEMPTS),
        wait=wait_exponential(multiplier=STEP_BACKOFF[0], max=STEP_BACKOFF[1]),
        before_sleep=lambda state: log.warning(
            "nightly step hit a transient error, retrying",
            extra={
                "step": step.name,
                "attempt": state.attempt_number,
                "error": _describe_outcome(state),
            },
        ),
        reraise=True,
    )
    try:
        return retrying(step.run, context), None
    except Exception as exc:  # recorded by the chain, which stops here
        errors.mark(exc, context.account.name, step.name)
        return {}, exc


def _describe_outcome(state: RetryCallState) -> str | None:
    failure = state.outcome.exception() if state.outcome else None
    return errors.describe(failure) if failure is not None else None


def nightly_for_account_id(
    account_id: int, as_of: datetime | None, trigger: str, task_id: str | None = None
) -> dict[str, Any]:
    """What a worker runs for one queued account: the shared database, the shared rate budget in Redis.

    The account may have been disconnected since the task was queued; that is not an error. Raises
    AccountBusy when another run holds the account (the task retries later).
    """
    settings, engine, account = queued_account(account_id)
    if account is None:
        log.warning(
            "nightly run skipped: the account is no longer connected",
            extra={"account_id": account_id, "task_id": task_id},
        )
        return {"account_id": account_id, "ok": True, "skipped": True, "error": "no such account"}
    context = NightContext(engine, settings, account, as_of or utc_now(), settings.retention_broker_url)
    return run_nightly(context, trigger, task_id=task_id).to_dict()


def connected_account_ids() -> list[int]:
    """Every connected account, for the scheduled fan-out."""
    engine = ensure_schema(get_settings().database_url)
    with Session(engine) as session:
        return [a.id for a in session.exec(select(Account).order_by(col(Account.id))) if a.id is not None]
