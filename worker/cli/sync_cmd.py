"""`retention sync` and `retention status`: copy Stripe into the database, and show how that went.

A sync that still fails after retries is recorded on the account and exits 1 (README); objects that could not
be parsed are skipped, listed under `rejected` in status, and do not fail the run. What status shows comes
from worker/status.py; this module parses arguments and prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from worker.cli.common import EXIT_FAILED, accounts_to_run, open_db, print_json
from worker.cli.tables import console, plural, show_items, show_lines

if TYPE_CHECKING:
    from worker.syncing import SyncResult


def _summary(out: Console, result: SyncResult) -> None:
    """What the run did, in a few lines that wrap between items (never inside a count)."""
    if not result.ok:
        mode = f"{result.mode} sync" if result.mode else "sync"
        failure = f"{mode} FAILED after {plural(result.requests, 'request')}: {result.error}"
        show_lines(out, [f"{result.account}: {failure}"])
        return
    show_lines(out, [f"{result.account}: {result.mode} sync done in {result.seconds:.1f} s ({result.note})"])
    stored = [f"{k.replace('_', ' ')} {n:,}" for k, n in sorted(result.stored.items()) if n]
    show_items(out, [f"stored {stored[0]}", *stored[1:]] if stored else ["nothing new to store"])
    extra = [f"{plural(result.requests, 'request')} to Stripe"]
    gone = [plural(n, k.removesuffix("s")) for k, n in sorted(result.deleted.items()) if n]
    if gone:  # a full sync found them no longer in Stripe
        extra.append("marked deleted (no longer in Stripe): " + ", ".join(gone))
    if result.rejected:
        extra.append(
            f"{plural(len(result.rejected), 'object')} rejected and skipped (see `retention status`)"
        )
    show_items(out, extra, sep="; ")


def sync(
    name: str | None = typer.Argument(None, help="Account name; every account when left out."),
    full: bool = typer.Option(False, "--full", help="Re-read everything instead of changes since last time."),
) -> None:
    """Copy the account's Stripe data (full the first time, then only changes) and print a summary.

    On a terminal a bar per list shows the counts, and for invoices the share read and the time left; off a
    terminal a plain line per list read and per tenth of the invoices goes to stderr."""
    from worker.cli.sync_progress import SyncProgress  # rich's progress bars: only a sync draws them
    from worker.settings import get_settings
    from worker.syncing import run_sync

    settings = get_settings()
    engine = open_db(settings)
    accounts = accounts_to_run(engine, name, "sync")
    progress_out, out = console(stderr=True), console()
    failed = False
    for account in accounts:
        with SyncProgress(account.name, progress_out) as show:
            result = run_sync(engine, settings, account, full=full, progress=show)
        _summary(out, result)
        failed = failed or not result.ok
    if failed:
        raise typer.Exit(EXIT_FAILED)


def status(
    name: str | None = typer.Argument(None, help="Account name; every account when left out."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (docs/interface.md)."),
) -> None:
    """When each account last synced, whether it worked, what is stored and what was rejected."""
    from worker.cli.common import read_db, select_account_rows
    from worker.status import account_status

    with read_db() as db:  # no SQLAlchemy import when the schema is current (README: start-up time)
        entries = [account_status(db, a.id, a.name) for a in select_account_rows(db, name)]
    if as_json:
        print_json({"accounts": entries})
        return
    out = console()
    for e in entries:
        _show_status(out, e)


def _show_status(out: Console, e: dict[str, Any]) -> None:
    """One account's status as lines that wrap between items, never inside an id or a count."""
    ok = {True: "ok", False: "FAILED", None: "never synced"}[e["last_sync_ok"]]
    mode = f"{e['mode']} sync" if e["mode"] else "sync"
    when = (e["last_sync_at"] or "-").replace("T", " ").replace("+00:00", " UTC")
    head = (
        f"{e['name']}: never synced"
        if e["last_sync_at"] is None
        else f"{e['name']}: last {mode} {when}: {ok}"
    )
    show_lines(out, [head])
    if e["last_error"]:
        show_lines(out, [f"error: {e['last_error']}"], indent=2)
    show_items(out, [f"{k.replace('_', ' ')} {n:,}" for k, n in e["counts"].items()])
    gone = [plural(n, k.removesuffix("s")) for k, n in e["deleted"].items() if n]
    if gone:  # each count kept whole on its line
        show_items(out, ["deleted in Stripe (kept, not counted): " + ", ".join(gone)])
    if e["rejected"]:
        show_lines(
            out, [f"{plural(len(e['rejected']), 'object')} rejected by the last sync (skipped):"], indent=2
        )
        show_lines(out, [f"{r['object']} {r['id']}: {r['error']}" for r in e["rejected"]], indent=4)
    nightly = e["last_nightly"]
    if nightly:
        started = str(nightly["started_at"]).replace("T", " ").replace("+00:00", " UTC")
        state = "ok" if nightly["ok"] else "FAILED"
        show_lines(out, [f"last nightly run {started}: {state}"], indent=2)
    tick = e["last_watch"]
    if tick:
        at = str(tick["at"])[:19].replace("T", " ") + " UTC"  # whole seconds
        problem = f": {tick['error']}" if tick["error"] else ""
        show_items(
            out,
            [
                f"last watch tick {at}: {tick['outcome']}{problem}",
                plural(tick["events"], "new event"),
                plural(tick["alerts"], "urgent alert"),
                f"{tick['pending']} waiting for Slack",
            ],
        )


def register(app: typer.Typer) -> None:
    """Adds `sync` and `status` to the `retention` app."""
    app.command()(sync)
    app.command()(status)


__all__ = ["register"]
