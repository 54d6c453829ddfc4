"""The demo's orchestration: every real step of the product on the generated sample company, nothing mocked.

A local Stripe-compatible server on 127.0.0.1 serves the sample company, the account is connected as
`retention connect` does, synced through the real SDK, rebuilt, measured, screened for risk, and the Slack
digest is prepared but never sent. It needs no network, no Redis and no PostgreSQL.

The demo never touches the user's accounts: it keeps its own home, `RETENTION_HOME/demo`, with its own
SQLite database and key file, whatever RETENTION_DATABASE_URL and RETENTION_SECRET_KEY say. (It used to
connect a `demo` account beside the user's, pointing at a local server gone once the demo ended, so every
later `retention sync` or `nightly` without NAME failed.) Re-running replaces the demo account there, because
each run's local server listens on a new port.

It lives here rather than in the command so that only `retention demo` (and the tests) import the sample
generator and the local server; the command imports this module when it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from integrations.slack.as_read import message_lines
from metrics.calendar import day_start
from worker.accounts import connect_account, disconnect_account
from worker.alerts import run_alerts
from worker.backtest import backtest_line, compute_backtest
from worker.backtest_store import save_backtest
from worker.demo.sample import build_sample_world, default_end
from worker.demo.stripe_server import FakeStripe
from worker.metrics_run import compute_metrics
from worker.models import Account
from worker.rebuild import rebuild_account
from worker.report.loader import write_report
from worker.risk import at_risk
from worker.secrets import Secret
from worker.settings import Settings
from worker.syncing import SyncResult, run_sync

__all__ = [
    "DEMO_ACCOUNT",
    "DEMO_KEY",
    "DemoFailed",
    "DemoOutcome",
    "default_end",
    "demo_settings",
    "run_demo",
]

DEMO_ACCOUNT = "demo"
DEMO_KEY = "sk_test_demo_northwind"  # only the local sample server knows it
DEMO_HOME = "demo"  # under RETENTION_HOME


# The user's settings the demo does not take: its own home, database and key instead, no Stripe key or Slack
# webhook, and no broker (its locks live in its own database; a Redis lock there would share keys with the
# user's accounts, and the demo needs no service running).
_NOT_FOR_THE_DEMO = (
    "retention_home",
    "retention_database_url",
    "retention_secret_key",
    "retention_broker_url",
    "stripe_api_key",
    "slack_webhook_url",
)


def demo_settings(settings: Settings) -> Settings:
    """The demo's own configuration: a home of its own under the user's, with its SQLite database and key
    file, and the user's other settings (request budget, risk thresholds, ...) as they are."""
    kept = {
        name: getattr(settings, name) for name in settings.model_fields_set if name not in _NOT_FOR_THE_DEMO
    }
    own = {"retention_home": settings.home / DEMO_HOME}
    return Settings.model_construct(_fields_set=set(kept) | set(own), **kept, **own)


@contextmanager
def step(console: Console, title: str) -> Iterator[Callable[[str], None]]:
    """One line per step with its duration; the callback updates the spinner's text while it runs."""
    started = time.monotonic()
    with console.status(title) as status:
        yield lambda note: status.update(f"{title} {note}")
    console.print(f"[green]✓[/green] {title} [dim]({time.monotonic() - started:.1f}s)[/dim]")


def replace_demo_account(engine: Engine, settings: Settings, api_base: str) -> Account:
    """A fresh `demo` account pointing at this run's local server (an old one and its data are removed)."""
    with Session(engine) as session:
        exists = session.exec(select(Account).where(Account.name == DEMO_ACCOUNT)).first() is not None
    if exists:
        disconnect_account(engine, DEMO_ACCOUNT)
    return connect_account(engine, settings, DEMO_ACCOUNT, Secret(DEMO_KEY), api_base, "usd", None, 0.0)


@dataclass
class DemoOutcome:
    """What the command prints once every step has run: the payloads, the digest and the report's path."""

    metrics: dict[str, Any]
    at_risk: dict[str, Any]
    digest: str | None
    backtest: str  # the backtest's sentence: how good the alerts have been on the sample's history
    report: Path
    sync: SyncResult


class DemoFailed(RuntimeError):
    """A step of the demo could not finish (the message says which)."""


def run_demo(
    engine: Engine,
    settings: Settings,
    console: Console,
    customers: int,
    end: date,
    as_of: datetime,
    out: Path,
) -> DemoOutcome:
    """Every step of the product on the sample company; the CLI command and the e2e tests share it."""
    with step(console, f"Generating the sample company ({customers} customers, 24 months)"):
        world = build_sample_world(customers=customers, end=end)
    with FakeStripe(world, api_keys=(DEMO_KEY,)) as server:
        console.print(f"  local Stripe-compatible server on {server.url} (read-only)")
        with step(console, "Connecting the account"):
            account = replace_demo_account(engine, settings, server.url)
        with step(console, "Syncing through the Stripe SDK") as note:
            result = run_sync_quietly(engine, settings, account, note)
    if not result.ok:
        raise DemoFailed(f"the sync failed: {result.error}")
    console.print(
        f"  {result.requests:,} requests, stored "
        + ", ".join(f"{kind.replace('_', ' ')} {n:,}" for kind, n in sorted(result.stored.items()))
    )
    with step(console, "Classifying lines and rebuilding MRR history"):
        rebuild_account(engine, account, today=as_of.date(), settings=settings)
    with step(console, "Computing retention metrics"):
        metrics = compute_metrics(engine, account, as_of)
    with step(console, "Backtesting the at-risk alerts on the history (12 past dates)"):
        # as of the sample's "now" (its month start): the history it generated ends there
        tested = compute_backtest(engine, account, min(as_of, day_start(end)))
        save_backtest(engine, account, tested)
    with step(console, "Screening for at-risk accounts"):
        risks = at_risk(engine, account, as_of)
    with step(console, "Preparing the Slack digest (dry run, nothing is sent)"):
        alert = run_alerts(engine, settings, account, as_of, dry_run=True)
    with step(console, "Writing the HTML report"):
        write_report(engine, account, as_of, out)
    return DemoOutcome(
        metrics=metrics,
        at_risk=risks,
        digest="\n".join(message_lines(alert.payloads)) if alert.payloads else alert.text,
        backtest=backtest_line(tested),
        report=out,
        sync=result,
    )


def run_sync_quietly(
    engine: Engine, settings: Settings, account: Account, note: Callable[[str], None]
) -> SyncResult:
    """A full sync with the counts shown on the spinner."""
    return run_sync(
        engine, settings, account, full=True, progress=lambda name, n, _share: note(f"— {name}: {n}")
    )
