"""The steps of a night, each a thin adapter from the chain to another team's plain function.

Each adapter returns a small summary for the run log (counts and headline figures, never secrets) and raises
StepFailed when the function reports failure without raising (a sync that could not reach Stripe returns
ok=False; an alert that could not be delivered keeps it pending and says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from worker.alerts import run_alerts
from worker.backtest import compute_backtest
from worker.backtest_store import save_backtest
from worker.errors import SafeMessage
from worker.metrics_run import compute_metrics
from worker.models import Account
from worker.rates import daily_refresh
from worker.rebuild import rebuild_account
from worker.settings import Settings
from worker.syncing import run_sync


class StepFailed(SafeMessage):
    """A step that ran to its end but reports failure; the message is recorded as the step's error."""


@dataclass(frozen=True)
class NightContext:
    """What every step is given."""

    engine: Engine
    settings: Settings
    account: Account
    as_of: datetime
    redis_url: str | None = None  # the Stripe rate budget shared by the workers; None: this process alone


StepFn = Callable[[NightContext], dict[str, Any]]


@dataclass(frozen=True)
class Step:
    name: str
    run: StepFn


def sync_step(ctx: NightContext) -> dict[str, Any]:
    result = run_sync(ctx.engine, ctx.settings, ctx.account, full=False, redis_url=ctx.redis_url)
    if not result.ok:
        raise StepFailed(result.error or "the sync failed")
    return {
        "mode": result.mode,
        "requests": result.requests,
        "stored": dict(result.stored),
        "rejected": len(result.rejected),
        "seconds": round(result.seconds, 3),
    }


def rebuild_step(ctx: NightContext) -> dict[str, Any]:
    """Refreshes the ECB rates first (once a day for the installation; never fails the night: a failure or
    rates more than 4 days old is a warning in `rates`), then rebuilds with them."""
    rates = daily_refresh(ctx.engine, ctx.settings.retention_rates_url, ctx.as_of.date())
    result = rebuild_account(ctx.engine, ctx.account, today=ctx.as_of.date())
    return {
        "lines": result.lines,
        "upcoming": result.upcoming,
        "snapshot_days": result.snapshot_days,
        "problems": result.problems[:20],  # named objects the rebuild left out
        "rates": rates,
    }


def metrics_step(ctx: NightContext) -> dict[str, Any]:
    payload = compute_metrics(ctx.engine, ctx.account, ctx.as_of, store=True)
    t12m = payload.get("t12m") or {}
    return {
        "as_of": payload.get("as_of"),
        "currency": payload.get("currency"),
        "mrr": payload.get("mrr"),
        "nrr": t12m.get("nrr"),
        "grr": t12m.get("grr"),
        "warnings": len(payload.get("warnings") or []),
    }


def backtest_step(ctx: NightContext) -> dict[str, Any]:
    """How good the alerts have been (docs/at-risk.md), stored per account and day so the history is kept and
    the alerts that follow carry each signal's track record."""
    result = compute_backtest(ctx.engine, ctx.account, ctx.as_of, reuse=True)
    save_backtest(ctx.engine, ctx.account, result)
    return {
        "as_of": result.as_of.isoformat(),
        "flags": result.flags,
        "precision": result.precision,
        "recall": result.recall,
        "noise": result.noise,
        "churners": len(result.churners),
        "median_lead_days": result.median_lead_days,
    }


def alert_step(ctx: NightContext) -> dict[str, Any]:
    """At-risk accounts and their Slack digest (run_alerts computes the at-risk list and delivers it)."""
    result = run_alerts(ctx.engine, ctx.settings, ctx.account, ctx.as_of)
    if result.error:  # delivery failed: the alerts stay pending for the next run, the night says so
        raise StepFailed(result.error)
    return {
        "at_risk": result.at_risk,
        "mrr_at_risk": result.mrr_at_risk,
        "messages": result.messages,
        "sent": result.sent,
        "pending": result.pending,
    }


DEFAULT_STEPS: tuple[Step, ...] = (
    Step("sync", sync_step),
    Step("rebuild", rebuild_step),
    Step("metrics", metrics_step),
    Step("backtest", backtest_step),
    Step("alerts", alert_step),
)
