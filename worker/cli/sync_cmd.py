"""`retention sync` and `retention status`: copy Stripe into the database, and show how that went.

A sync that still fails after retries is recorded on the account and exits 1 (README); objects that could not
be parsed are skipped, listed under `rejected` in status, and do not fail the run. What status shows comes
from worker/status.py; this module parses arguments and prints."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn
from sqlmodel import Session

from worker.cli.common import EXIT_FAILED, open_db, print_json, select_accounts
from worker.settings import get_settings
from worker.status import account_status
from worker.syncing import SyncResult, run_sync


def _summary(result: SyncResult) -> str:
    if not result.ok:
        return f"{result.account}: sync FAILED after {result.requests} requests: {result.error}"
    stored = ", ".join(f"{n} {k}" for k, n in sorted(result.stored.items()) if n)
    text = (
        f"{result.account}: {result.mode} sync done in {result.seconds:.1f}s, {result.requests} requests"
        f" ({result.note}); stored {stored or 'nothing new'}"
    )
    if result.rejected:
        text += f"; {len(result.rejected)} objects rejected (see `retention status`)"
    return text


def sync(
    name: str | None = typer.Argument(None, help="Account name; every account when left out."),
    full: bool = typer.Option(False, "--full", help="Re-read everything instead of changes since last time."),
) -> None:
    """Copy the account's Stripe data (full the first time, then only changes) and print a summary."""
    settings = get_settings()
    engine = open_db(settings)
    with Session(engine) as session:
        accounts = select_accounts(session, name)
    console = Console(stderr=True)
    failed = False
    for account in accounts:
        if console.is_terminal:
            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
            ) as bar:
                task = bar.add_task(f"{account.name}: starting", total=None)
                seen: dict[str, int] = {}

                def show(
                    list_name: str,
                    stored: int,
                    bar: Progress = bar,
                    task: Any = task,
                    seen: dict[str, int] = seen,
                    label: str = account.name,
                ) -> None:
                    seen[list_name] = stored
                    bar.update(
                        task, description=f"{label}: " + ", ".join(f"{n} {k}" for k, n in seen.items())
                    )

                result = run_sync(engine, settings, account, full=full, progress=show)
        else:
            result = run_sync(engine, settings, account, full=full)
        typer.echo(_summary(result))
        failed = failed or not result.ok
    if failed:
        raise typer.Exit(EXIT_FAILED)


def status(
    name: str | None = typer.Argument(None, help="Account name; every account when left out."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (docs/interface.md)."),
) -> None:
    """When each account last synced, whether it worked, what is stored and what was rejected."""
    engine = open_db()
    with Session(engine) as session:
        accounts = select_accounts(session, name)
        entries = [account_status(engine, session, a) for a in accounts]
    if as_json:
        print_json({"accounts": entries})
        return
    for e in entries:
        ok = {True: "ok", False: "FAILED", None: "never synced"}[e["last_sync_ok"]]
        typer.echo(f"{e['name']}: last sync {e['last_sync_at'] or '-'} ({e['mode'] or '-'}) {ok}")
        if e["last_error"]:
            typer.echo(f"  error: {e['last_error']}")
        typer.echo("  " + ", ".join(f"{k} {n}" for k, n in e["counts"].items()))
        for r in e["rejected"]:
            typer.echo(f"  rejected {r['object']} {r['id']}: {r['error']}")
        nightly = e["last_nightly"]
        if nightly:
            typer.echo(f"  last nightly {nightly['started_at']} ok={nightly['ok']}")
        tick = e["last_watch"]
        if tick:
            problem = f": {tick['error']}" if tick["error"] else ""
            typer.echo(
                f"  last watch tick {tick['at']} {tick['outcome']}{problem} events={tick['events']} "
                f"alerts={tick['alerts']} pending={tick['pending']}"
            )


def register(app: typer.Typer) -> None:
    """Adds `sync` and `status` to the `retention` app."""
    app.command()(sync)
    app.command()(status)


__all__ = ["register"]
