"""`retention watch [NAME] [--once]`: the same-day watch in the foreground (for a machine without Celery).

With --once, one tick of each account and exit (1 when a tick failed or Slack refused its alerts, which stay
pending; both are recorded on the account); without it, a tick of every account every RETENTION_WATCH_EVERY
minutes until stopped (Ctrl-C or SIGTERM). The tick itself is worker/watch.py; this module parses arguments
and prints.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import typer

from worker.cli.common import EXIT_FAILED, load_accounts, open_db, print_json, refuse
from worker.cli.tables import plural as _n

if TYPE_CHECKING:
    from worker.watch import TickResult

# The tick (the sync, the Stripe SDK, Slack) is imported inside the command (start-up time: README).


def describe(r: TickResult) -> str:
    """One line per tick: what it found and did, what it cost."""
    from worker.watch_state import FAILED, FULL, QUIET, SKIPPED

    cost = f"{_n(r.requests, 'request')}, {r.seconds:.2f}s"
    if r.outcome == SKIPPED:
        return f"{r.account}: {r.note}"
    if not r.ok and r.outcome == FAILED:
        return f"{r.account}: watch tick FAILED: {r.error} ({cost})"
    if r.outcome == FULL:
        return f"{r.account}: {r.note} ({cost})"
    found = "quiet, no new events" if r.outcome == QUIET else f"{_n(r.events, 'new event')} applied"
    line = f"{r.account}: {found}; {_n(r.customers, 'customer')} checked"
    if r.alerts or r.recoveries:
        told = [_n(r.alerts, "urgent alert")] if r.alerts else []
        told += [_n(r.recoveries, "recovery", "recoveries")] if r.recoveries else []
        line += f"; {' and '.join(told)} posted to Slack"
    if r.pending:
        line += f"; {r.pending} waiting for Slack"
    if r.error:
        line += f" (Slack: {r.error})"
    elif r.note:
        line += f" ({r.note})"
    return f"{line} ({cost})"


def watch(
    name: str | None = typer.Argument(None, help="Account name; default: every connected account."),
    once: bool = typer.Option(False, "--once", help="Run one tick of each account and exit."),
    as_json: bool = typer.Option(False, "--json", help="With --once: print the ticks as JSON."),
) -> None:
    """The same-day watch: apply Stripe's events since the last sync and post urgent alerts at once."""
    from worker.settings import get_settings
    from worker.watch import tick_accounts, watch_forever

    settings = get_settings()
    engine = open_db(settings)
    if once:
        results = list(tick_accounts(engine, settings, load_accounts(engine, name)))
        if as_json:
            print_json({"ticks": [r.to_dict() for r in results]})
        else:
            for result in results:
                typer.echo(describe(result))
        if any(not r.ok or r.error for r in results):  # a failed tick, or Slack refused its alerts
            raise typer.Exit(EXIT_FAILED)
        return
    if settings.retention_watch_every == 0:
        refuse("RETENTION_WATCH_EVERY=0 turns the watch off: set a number of minutes, or use --once")
    load_accounts(engine, name)  # refuses an unknown name before the first tick
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    typer.echo(f"watching every {settings.retention_watch_every:g} minutes; Ctrl-C to stop", err=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops the watch between or during ticks
        watch_forever(
            engine,
            settings,
            lambda: load_accounts(engine, name),
            lambda r: typer.echo(describe(r)),
            stopped.wait,
        )


def register(app: typer.Typer) -> None:
    """Adds `watch` to the `retention` app."""
    app.command()(watch)
