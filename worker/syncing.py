"""Running a sync for one connected account and recording its outcome on SyncState.

A Stripe failure that outlives the retries is recorded as a failed run with its error (never as success) and
returned with ok=False; the checkpoint stays, so the next run resumes where this one stopped."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine

from integrations.stripe.client import StripeReader, StripeReadError
from integrations.stripe.events import EventRecord
from integrations.stripe.models import SyncState
from integrations.stripe.sync import Progress, Syncer, SyncOutcome
from metrics.tables import table_of
from worker.accounts import stripe_config
from worker.errors import describe, failure_line, mark
from worker.locks import exclusive
from worker.models import Account
from worker.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    account: str
    ok: bool
    mode: str | None = None
    note: str = ""
    error: str | None = None
    resumed: bool = False
    requests: int = 0
    stored: dict[str, int] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    events: list[EventRecord] = field(default_factory=list)  # events applied by an incremental, oldest first
    events_skipped: int = 0
    deleted: dict[str, int] = field(default_factory=dict)  # newly marked deleted (no longer in Stripe)


@exclusive("sync")
def run_sync(
    engine: Engine,
    settings: Settings,
    account: Account,
    full: bool = False,
    progress: Progress | None = None,
    redis_url: str | None = None,
    events_only: bool = False,
) -> SyncResult:
    """Sync the account (full or incremental, as SyncState says) and record the outcome.

    `events_only` is the same-day watch's sync: the events since the cursor only (integrations/stripe/sync.py
    `Syncer.run`). A Stripe failure is returned as ok=False with its error, never raised. Holds the account's
    lock (worker/locks.py): AccountBusy when another sync, rebuild or night of it is running.
    """
    assert account.id is not None
    config = stripe_config(settings, account, redis_url=redis_url)
    reader = StripeReader(config)
    syncer = Syncer(engine, account.id, reader, progress=progress)
    syncer.state()  # the row exists before anything can fail, so the outcome is always recorded
    started = time.monotonic()
    try:
        outcome = syncer.run(full=full, events_only=events_only)
    except StripeReadError as exc:
        result = SyncResult(
            account.name,
            ok=False,
            mode=syncer.attempted,
            error=str(exc),
            requests=reader.requests,
            stored=dict(syncer.stored),
        )
    except Exception as exc:
        # Anything else is a bug or a database failure: still recorded as a failed run, then raised. The
        # record names the class only: a database error's text is its SQL with the bound values.
        mark(exc, account.name, "sync")
        failed = SyncResult(account.name, ok=False, error=failure_line(exc), requests=reader.requests)
        _record_if_possible(engine, account.id, failed)
        raise
    else:
        result = _succeeded(account.name, outcome, reader.requests)
    result.seconds = time.monotonic() - started
    if not (events_only and result.ok and result.mode == "incremental" and not any(result.stored.values())):
        # a watch tick that stored nothing leaves the last sync as it was: the ledger built after it stays
        # current, instead of every quiet tick sending the next command to rebuild it
        _record(engine, account.id, result)
    return result


def _record_if_possible(engine: Engine, account_id: int, result: SyncResult) -> None:
    """Records a failure unless the database itself is what failed (the command's line says so then)."""
    try:
        _record(engine, account_id, result)
    except Exception as exc:
        log.warning("could not record the failed sync", extra={"error": describe(exc)})


def _succeeded(account_name: str, outcome: SyncOutcome, requests: int) -> SyncResult:
    """What a finished run reports: the mode it chose and why, and what it stored and rejected."""
    return SyncResult(
        account_name,
        ok=True,
        mode=outcome.mode,
        note=outcome.note,
        resumed=outcome.resumed,
        requests=requests,
        stored=outcome.stored,
        rejected=outcome.rejected,
        events=outcome.events,
        events_skipped=outcome.events_skipped,
        deleted=outcome.deleted,
    )


def _record(engine: Engine, account_id: int, result: SyncResult) -> None:
    state = table_of(SyncState)
    values: dict[str, Any] = {
        "last_sync_at": int(time.time()),
        "last_sync_ok": result.ok,
        "last_error": result.error,
        "requests": result.requests,
    }
    if result.mode is not None:  # a failed run is shown as the mode it tried, not the last run's
        values["mode"] = result.mode
    with engine.begin() as conn:
        conn.execute(update(state).where(state.c.account_id == account_id).values(**values))
