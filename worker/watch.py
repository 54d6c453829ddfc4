"""The same-day watch: one tick of one account reads the Stripe events since the sync cursor, applies them,
and tells Slack at once about a large account whose cancellation was just scheduled or whose payment failed.

A tick is the incremental sync's event path (integrations/stripe/sync.py `Syncer.run(events_only=True)`):
the same code stores the re-read objects and the same cursor moves on, so a tick and a nightly between them
apply every event once. Then only the customers those events touched (and those whose urgent alert is still
waiting for Slack) are judged, so a tick's work follows the number of events, not the size of the account: a
quiet tick is one request to Stripe and a few indexed reads. An events cursor Stripe no longer covers (30
days) sends the tick down the nightly's full path; it says so and alerts nothing itself (the digest has the
whole picture, a storm of same-day alerts would not).

Two seams are kept to one function each, so that the lock and the signal rules can change under them:
`_hold_lock` (worker/locks.py) and `_urgent_signals` (metrics/at_risk.py).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from integrations.slack.urgent import Happened
from integrations.stripe.events import EventRecord
from metrics.at_risk import CustomerRecords, Signal, evaluate
from metrics.calendar import moment_ts, utc_now
from metrics.money import exponent
from worker import watch_state
from worker.accounts import queued_account
from worker.alert_state import URGENT
from worker.db import session_scope
from worker.deliveries import delivery_over_cap
from worker.locks import AccountBusy, account_lock
from worker.logging import log_context
from worker.models import Account
from worker.mrr_queries import has_snapshots, top_fifth_floor
from worker.rebuild import ensure_ledger
from worker.risk import iter_records
from worker.risk_settings import risk_thresholds
from worker.settings import Settings
from worker.syncing import SyncResult, run_sync
from worker.watch_alerts import Judged, pending_customers, plan_urgent, post_plan
from worker.watch_state import WatchTick

log = logging.getLogger(__name__)


@dataclass
class TickResult:
    """What one tick did, as `retention watch`, the task and `retention status` report it."""

    account: str
    outcome: str  # quiet | applied | alerted | skipped | full_sync | failed (worker/watch_state.py)
    ok: bool = True
    note: str = ""
    error: str | None = None
    events: int = 0  # new events applied
    events_skipped: int = 0  # events of the overlap an earlier read had applied
    customers: int = 0  # customers judged (touched by the events, or with an alert waiting for Slack)
    requests: int = 0  # Stripe requests
    alerts: int = 0  # urgent alerts Slack accepted
    recoveries: int = 0  # recoveries Slack accepted
    pending: int = 0  # urgent alerts and recoveries still waiting for Slack
    rejected: int = 0  # objects the sync could not parse (listed by `retention status`)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the two seams -------------------------------------------------------------------------------------
@contextmanager
def _hold_lock(
    settings: Settings, engine: Engine, account: Account, owner: str | None
) -> Iterator[AccountBusy | None]:
    """The account's one run lock (worker/locks.py), shared with sync, rebuild and the nightly: yields None
    while this tick holds it, or the refusal naming who holds it (the tick is then skipped, not retried)."""
    stack = ExitStack()
    try:
        stack.enter_context(account_lock(settings, engine, account, "watch tick", owner=owner))
    except AccountBusy as refused:
        busy: AccountBusy | None = refused
    else:
        busy = None
    with stack:
        yield busy


def _urgent_signals(records: CustomerRecords, at: datetime) -> tuple[Signal, ...]:
    """The urgent signals (cancel_scheduled, payment_failed) that hold for the customer now: the digest's
    own evaluation (metrics/at_risk.py `evaluate`, the installation's thresholds) on the stored state, which
    the tick has just refreshed (so it describes now); none for a customer who pays nothing."""
    found = evaluate(records, moment_ts(at), records.mrr, True, risk_thresholds())
    return tuple(s for s in found.signals if s.code in URGENT) if found is not None else ()


# -- the tick ------------------------------------------------------------------------------------------
def run_tick(
    engine: Engine,
    settings: Settings,
    account: Account,
    *,
    redis_url: str | None = None,
    trigger: str = "manual",
    task_id: str | None = None,
    pause: float = 1.0,
) -> TickResult:
    """One tick of the account, unless another run of it (a nightly, another tick) holds the lock: then the
    tick is skipped and logged. The outcome is recorded for `retention status` either way."""
    started = time.monotonic()
    with (
        log_context(account=account.name, account_id=account.id, task_id=task_id),
        _hold_lock(settings, engine, account, task_id) as busy,
    ):
        if busy is not None:
            who = busy.holder.describe() if busy.holder else "another run"
            log.warning("watch tick skipped: the account is busy", extra={"holder": who})
            result = TickResult(
                account.name, watch_state.SKIPPED, note=f"skipped: {who} holds this account's lock"
            )
        else:
            try:
                result = _tick(engine, settings, account, redis_url, pause)
            except Exception as exc:  # a bug or a database failure: recorded and logged, the watch goes on
                log.exception("watch tick failed")
                error = f"{type(exc).__name__} (details in the log)"
                result = TickResult(account.name, watch_state.FAILED, ok=False, error=error)
    result.seconds = time.monotonic() - started
    _record(engine, account, result, trigger)
    log.info("watch tick done", extra={"outcome": result.outcome, "events": result.events})
    return result


def _tick(
    engine: Engine, settings: Settings, account: Account, redis_url: str | None, pause: float
) -> TickResult:
    synced = run_sync(engine, settings, account, redis_url=redis_url, events_only=True)
    result = TickResult(
        account.name, watch_state.QUIET, requests=synced.requests, rejected=len(synced.rejected)
    )
    if not synced.ok:
        result.outcome, result.ok, result.error = watch_state.FAILED, False, synced.error
        return result
    if synced.mode == "full":
        result.outcome = watch_state.FULL
        result.note = (
            f"{synced.note}; no same-day alerts from this tick (the nightly digest covers the account)"
        )
        return result
    result.events, result.events_skipped = len(synced.events), synced.events_skipped
    if synced.events:
        result.outcome = watch_state.APPLIED
    _alert(engine, settings, account, synced, result, pause)
    return result


def _alert(
    engine: Engine,
    settings: Settings,
    account: Account,
    synced: SyncResult,
    result: TickResult,
    pause: float,
) -> None:
    """Judge the touched customers and post what is urgent (worker/watch_alerts.py says what that is)."""
    touched = _touched(synced.events)
    with Session(engine) as session:
        waiting = pending_customers(session, account)
    customers = sorted(set(touched) | set(waiting))
    result.customers = len(customers)
    if not customers:
        return
    now = utc_now()
    _ledger_once(engine, account, now)
    judged = [
        Judged(records, _urgent_signals(records, now), touched.get(records.customer_id, ()))
        for records in _records(engine, account, customers, now)
    ]
    floor = urgent_floor(engine, settings, account, now) if any(j.signals for j in judged) else None
    with Session(engine, expire_on_commit=False) as session:
        plan = plan_urgent(session, account, judged, floor)
        session.commit()  # pending before anything is posted: a crash repeats an alert, never loses one
    delivered = post_plan(engine, settings, account, plan, pause)
    result.alerts = sum(1 for a in plan.alerts if a.customer_id in delivered.settled)
    result.recoveries = sum(1 for r in plan.recoveries if r.customer_id in delivered.settled)
    result.pending = delivered.pending
    result.error = delivered.error
    if delivered.skipped:
        result.note = delivered.skipped
    if result.alerts or result.recoveries:
        result.outcome = watch_state.ALERTED


def _touched(events: Sequence[EventRecord]) -> dict[str, tuple[Happened, ...]]:
    """Customer -> the events about it, oldest first (what happened and when), for the customers named."""
    found: dict[str, list[Happened]] = defaultdict(list)
    for event in events:
        if event.customer_id is not None:
            found[event.customer_id].append(Happened(event.type, event.created))
    return {cid: tuple(happened) for cid, happened in found.items()}


def _records(
    engine: Engine, account: Account, customers: Sequence[str], now: datetime
) -> list[CustomerRecords]:
    """The signal inputs of these customers only (name, MRR now, subscriptions, invoices...), loaded as the
    at-risk run loads them (worker/risk.py), so the watch and the digest judge the same records."""
    return list(iter_records(engine, account, customers, moment_ts(now)))


def urgent_floor(engine: Engine, settings: Settings, account: Account, now: datetime) -> int | None:
    """The MRR (reporting minor units) from which an urgent signal is posted at once: RETENTION_URGENT_MRR,
    else the smallest MRR of the account's top fifth (from the newest stored snapshot). None: nobody pays,
    nothing is urgent."""
    if settings.retention_urgent_mrr is not None:
        return to_minor(settings.retention_urgent_mrr, account.reporting_currency)
    with engine.connect() as conn:
        return top_fifth_floor(conn, account.id or 0, now.date())


def _ledger_once(engine: Engine, account: Account, now: datetime) -> None:
    """An account whose ledger was never built (synced but not yet through a night) gets it built once, so
    its customers have an MRR to weigh; after that the tick reads the ledger the nights keep."""
    with engine.connect() as conn:
        built = has_snapshots(conn, account.id or 0)
    if not built:
        ensure_ledger(engine, account, now.date())


def to_minor(amount: Decimal, currency: str) -> int:
    """Major units (as RETENTION_URGENT_MRR is written) -> integer minor units of the currency."""
    return int((amount * (10 ** exponent(currency))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _record(engine: Engine, account: Account, result: TickResult, trigger: str) -> None:
    detail = {
        k: getattr(result, k)
        for k in (
            "events",
            "events_skipped",
            "customers",
            "requests",
            "alerts",
            "recoveries",
            "pending",
            "rejected",
        )
    }
    row = WatchTick(
        account_id=account.id or 0,
        outcome=result.outcome,
        ok=result.ok and result.error is None,
        trigger=trigger[:20],
        seconds=result.seconds,
        detail=detail,
        note=result.note or None,
        error=result.error,
    )
    with session_scope(engine) as session:
        watch_state.record_tick(session, row)


# -- every account, in the foreground ------------------------------------------------------------------
def tick_accounts(
    engine: Engine, settings: Settings, accounts: Sequence[Account], pause: float = 1.0
) -> Iterator[TickResult]:
    """`retention watch --once`: one tick of each account in turn, in this process."""
    for account in accounts:
        yield run_tick(engine, settings, account, trigger="manual", pause=pause)


def watch_forever(
    engine: Engine,
    settings: Settings,
    accounts: Callable[[], Sequence[Account]],
    report: Callable[[TickResult], None],
    stop: Callable[[float], bool],
) -> None:
    """`retention watch` without --once: a tick of every account every RETENTION_WATCH_EVERY minutes until
    `stop(seconds)` (which waits up to that long) says to stop. Ticks start on the interval, not after it."""
    every = settings.retention_watch_every * 60
    while True:
        started = time.monotonic()
        for result in tick_accounts(engine, settings, accounts()):
            report(result)
        if stop(max(0.0, every - (time.monotonic() - started))):
            return


def watch_account_id(
    account_id: int, trigger: str, task_id: str | None = None, retries: int = 0
) -> dict[str, Any]:
    """What a worker runs for one queued tick: the shared database, the Redis lock and rate budget.

    The account may have been disconnected since the tick was queued; that is not an error. A tick whose
    worker died under it is delivered again, like a night (worker/deliveries.py): past
    RETENTION_MAX_DELIVERIES it is recorded as a failed tick with the reason instead of being run again.
    """
    settings, engine, account = queued_account(account_id)
    if account is None:
        log.warning(
            "watch tick skipped: the account is no longer connected", extra={"account_id": account_id}
        )
        return {
            "account_id": account_id,
            "ok": True,
            "outcome": watch_state.SKIPPED,
            "error": "no such account",
        }
    given_up = delivery_over_cap(settings, task_id, retries, "watch --once") if task_id else None
    if given_up is not None:
        log.error("watch task given up", extra={"account_id": account_id, "error": given_up})
        result = TickResult(account.name, watch_state.FAILED, ok=False, error=given_up)
        _record(engine, account, result, trigger)
        return result.to_dict()
    return run_tick(
        engine, settings, account, redis_url=settings.retention_broker_url, trigger=trigger, task_id=task_id
    ).to_dict()
