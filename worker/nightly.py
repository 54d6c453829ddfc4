"""The night of one account: sync -> rebuild -> metrics -> backtest -> at-risk and Slack, as one locked chain.

The steps run in order in one process under the account's lock, rather than as separate Celery tasks, so
the lock spans the whole chain and a redelivered task simply reruns it: every step is idempotent (upserts by
Stripe id, snapshots keyed by day, alerts keyed by fingerprint). Accounts run in parallel because each account
is its own task. A failing step is recorded with its error and stops that account's chain (metrics over a
half-synced account would be wrong, an alert over stale metrics misleading); the run is then marked failed.
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

from metrics.calendar import utc_now
from worker import runlog
from worker.db import ensure_schema
from worker.locks import DEFAULT_TTL, account_lock
from worker.logging import log_context
from worker.models import Account
from worker.nightly_steps import DEFAULT_STEPS, NightContext, Step
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class NightlyResult:
    account: str
    account_id: int
    ok: bool
    skipped: bool = False
    run_id: int | None = None
    failed_step: str | None = None
    error: str | None = None
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_nightly(
    context: NightContext,
    trigger: str = "manual",
    *,
    task_id: str | None = None,
    steps: Sequence[Step] | None = None,
    lock_ttl: float = DEFAULT_TTL,
) -> NightlyResult:
    """Runs the account's chain unless another run of it holds the lock (then skipped, logged, not recorded).

    The context is what every step is given; its `redis_url` selects the Redis lock shared by all workers
    (and the shared Stripe rate budget); without it the lock is a file lock in RETENTION_HOME, for runs on
    this one machine.
    """
    account = context.account
    assert account.id is not None
    chain = list(steps if steps is not None else DEFAULT_STEPS)
    locks = context.settings.home / "locks"
    with (
        log_context(account=account.name, account_id=account.id, task_id=task_id),
        account_lock(account.id, context.redis_url, locks, lock_ttl, task_id) as held,
    ):
        if not held:
            log.warning(
                "nightly run skipped: another run of this account is in progress", extra={"trigger": trigger}
            )
            return NightlyResult(account=account.name, account_id=account.id, ok=True, skipped=True)
        return _run_chain(context, chain, trigger, task_id)


def run_here(
    engine: Engine, settings: Settings, accounts: Iterable[Account], as_of: datetime | None
) -> list[NightlyResult]:
    """`retention nightly` without --enqueue: each account's night in turn, in this process.

    No Redis: the lock is a file lock. Without `as_of`, each account's night is as of its own start.
    """
    return [
        run_nightly(NightContext(engine, settings, account, as_of or utc_now()), trigger="manual")
        for account in accounts
    ]


def runs_json(results: Iterable[NightlyResult]) -> dict[str, Any]:
    """`retention nightly --json`: every account's run under `accounts` (the envelope of every multi-account
    command), the failed ones with the step that stopped them."""
    return {"accounts": [r.to_dict() for r in results]}


def _run_chain(context: NightContext, chain: list[Step], trigger: str, task_id: str | None) -> NightlyResult:
    account = context.account
    assert account.id is not None
    run_id = runlog.start_run(context.engine, account.id, trigger, task_id)
    result = NightlyResult(account=account.name, account_id=account.id, ok=True, run_id=run_id)
    log.info("nightly run started", extra={"trigger": trigger, "run_id": run_id})
    for step in chain:
        started = time.monotonic()
        try:
            detail, error = step.run(context), None
        except Exception as exc:  # any failure of a step is recorded and ends this account's chain
            detail, error = {}, f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - started
        runlog.record_step(context.engine, run_id, step.name, error is None, seconds, detail, error)
        result.steps[step.name] = {
            "ok": error is None,
            "seconds": round(seconds, 3),
            "detail": detail,
            "error": error,
        }
        if error is not None:
            log.error("nightly step failed", extra={"step": step.name, "error": error})
            result.ok, result.failed_step, result.error = False, step.name, f"{step.name}: {error}"
            break
        log.info("nightly step done", extra={"step": step.name, "seconds": round(seconds, 3)})
    runlog.finish_run(context.engine, run_id, result.ok, result.error)
    log.info("nightly run finished", extra={"ok": result.ok, "run_id": run_id})
    return result


def nightly_for_account_id(
    account_id: int, as_of: datetime | None, trigger: str, task_id: str | None = None
) -> dict[str, Any]:
    """What a worker runs for one queued account: the shared database, the Redis lock, the shared rate budget.

    The account may have been disconnected since the task was queued; that is not an error.
    """
    settings = get_settings()
    engine = ensure_schema(settings.database_url)
    with Session(engine, expire_on_commit=False) as session:
        account = session.get(Account, account_id)
    if account is None:
        log.warning(
            "nightly run skipped: the account is no longer connected",
            extra={"account_id": account_id, "task_id": task_id},
        )
        return {"account_id": account_id, "ok": True, "skipped": True, "error": "no such account"}
    redis_url = settings.retention_broker_url if settings.retention_broker_url.startswith("redis") else None
    context = NightContext(engine, settings, account, as_of or utc_now(), redis_url)
    return run_nightly(context, trigger, task_id=task_id).to_dict()


def connected_account_ids() -> list[int]:
    """Every connected account, for the scheduled fan-out."""
    engine = ensure_schema(get_settings().database_url)
    with Session(engine) as session:
        return [a.id for a in session.exec(select(Account).order_by(col(Account.id))) if a.id is not None]
