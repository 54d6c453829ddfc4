"""`retention demo` and `retention report`: the whole product on the sample company, and the HTML report.

The demo runs every real step, with nothing mocked: a local Stripe-compatible server on 127.0.0.1 serves the
generated sample company, the account is connected as `retention connect` does, synced through the real SDK,
rebuilt, measured, screened for risk, and the Slack digest is previewed (never sent). It needs no network, no
Redis and no PostgreSQL: the default embedded SQLite in RETENTION_HOME. Re-running replaces the demo account,
because each run's local server listens on a new port.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from integrations.stripe.sample import build_sample_world, default_end
from integrations.stripe.testserver import FakeStripe
from worker.accounts import ConnectError, connect_account, disconnect_account
from worker.alerts import run_alerts
from worker.cli.common import EXIT_FAILED, open_db, parse_as_of, refuse, select_accounts
from worker.metrics_run import compute_metrics
from worker.models import Account
from worker.rebuild import rebuild_account
from worker.report.loader import write_report
from worker.report.render import money, pct
from worker.risk import at_risk
from worker.secrets import Secret
from worker.settings import Settings, get_settings
from worker.syncing import SyncResult, run_sync

DEMO_ACCOUNT = "demo"
DEMO_KEY = "sk_test_demo_northwind"  # only the local sample server knows it
DEMO_CUSTOMERS = 300
DIGEST_PREVIEW_LINES = 16


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


def summary_panel(metrics: dict[str, Any], at_risk_payload: dict[str, Any]) -> Panel:
    """The board summary as the terminal shows it."""
    currency = metrics["currency"]
    t12m, monthly = metrics["t12m"], metrics["monthly"]
    table = Table.grid(padding=(0, 3))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("MRR", money(metrics["mrr"], currency))
    table.add_row("NRR (T12M, recurring only)", pct(t12m["nrr"]))
    table.add_row("NRR if one-time fees were counted", f"[dim]{pct(t12m['nrr_including_one_time'])}[/dim]")
    table.add_row("GRR (T12M)", pct(t12m["grr"]))
    table.add_row(
        "Logo retention (T12M)", f"{pct(t12m['logo_retention'])}  ({t12m['retained']} of {t12m['customers']})"
    )
    table.add_row("Monthly NRR, annualized", pct(monthly.get("nrr_annualized")))
    table.add_row("At-risk accounts", str(len(at_risk_payload.get("accounts") or [])))
    sentence = (metrics.get("summary") or {}).get("sentence") or ""
    warnings = "\n".join(f"[yellow]! {w['message']}[/yellow]" for w in metrics.get("warnings") or [])
    body = Table.grid()
    body.add_row(table)
    if sentence:
        body.add_row("")
        body.add_row(sentence)
    if warnings:
        body.add_row(warnings)
    return Panel(body, title=f"Board summary as of {metrics['as_of']}", expand=False)


@dataclass
class DemoOutcome:
    metrics: dict[str, Any]
    at_risk: dict[str, Any]
    digest: str | None
    report: Path
    sync: SyncResult


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
        f"  {result.requests} requests, stored "
        + ", ".join(f"{n} {kind}" for kind, n in sorted(result.stored.items()))
    )
    with step(console, "Classifying lines and rebuilding MRR history"):
        rebuild_account(engine, account, today=as_of.date())
    with step(console, "Computing retention metrics"):
        metrics = compute_metrics(engine, account, as_of)
    with step(console, "Screening for at-risk accounts"):
        risks = at_risk(engine, account, as_of)
    with step(console, "Preparing the Slack digest (dry run, nothing is sent)"):
        alert = run_alerts(engine, settings, account, as_of, dry_run=True)
    with step(console, "Writing the HTML report"):
        write_report(engine, account, as_of, out)
    return DemoOutcome(metrics=metrics, at_risk=risks, digest=alert.text, report=out, sync=result)


class DemoFailed(RuntimeError):
    """A step of the demo could not finish (the message says which)."""


def preview(digest: str | None, max_lines: int = DIGEST_PREVIEW_LINES) -> str:
    """The digest's first lines: enough to see what Slack would get without scrolling the summary away."""
    if not digest:
        return "(no digest: no account at risk)"
    lines = digest.splitlines()
    if len(lines) <= max_lines:
        return digest
    return "\n".join(
        [*lines[:max_lines], f"… {len(lines) - max_lines} more lines: `retention alert --dry-run`"]
    )


def demo(
    customers: int = typer.Option(DEMO_CUSTOMERS, help="Customers in the sample company."),
    out: Path | None = typer.Option(
        None, help="Where to write the HTML report (default RETENTION_HOME/reports)."
    ),
) -> None:
    """The whole product on a built-in sample company: no network, no services, well under a minute."""
    console = Console()
    settings = get_settings()
    engine = open_db(settings)
    today = datetime.now(UTC)
    as_of = datetime(today.year, today.month, today.day, tzinfo=UTC)
    target = out or settings.home / "reports" / "demo-report.html"
    try:
        outcome = run_demo(engine, settings, console, customers, default_end(), as_of, target)
    except ConnectError as exc:
        refuse(str(exc))
    except DemoFailed as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    console.print(Panel(preview(outcome.digest), title="Slack digest preview (not sent)", expand=False))
    console.print(summary_panel(outcome.metrics, outcome.at_risk))
    console.print(f"Report: [bold]{target}[/bold]  (open it in a browser; it works offline)")


def run_sync_quietly(
    engine: Engine, settings: Settings, account: Account, note: Callable[[str], None]
) -> SyncResult:
    """A full sync with the counts shown on the spinner."""
    return run_sync(engine, settings, account, full=True, progress=lambda name, n: note(f"— {name}: {n}"))


def report(
    name: str | None = typer.Argument(None, help="Account (default: every connected account)."),
    as_of: str | None = typer.Option(None, help="YYYY-MM-DD, 00:00 UTC that day (default: now)."),
    out: Path = typer.Option(..., help="The HTML file to write (one self-contained file)."),
) -> None:
    """Write the HTML report: board summary, charts, cohorts, segments and at-risk accounts."""
    moment = parse_as_of(as_of)
    engine = open_db()
    with Session(engine) as session:
        accounts = select_accounts(session, name)
    for account in accounts:
        target = out if len(accounts) == 1 else out.with_name(f"{out.stem}-{account.name}{out.suffix}")
        write_report(engine, account, moment, target)
        typer.echo(f"Wrote {target} ({account.name}).")


def register(app: typer.Typer) -> None:
    """Adds `demo` and `report` to the `retention` app."""
    app.command()(demo)
    app.command()(report)
