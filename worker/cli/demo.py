"""`retention demo` and `retention report`: the whole product on the sample company, and the HTML report.

The demo command only reads its options, runs worker.demo.run (the steps, on a local Stripe-compatible server
serving the generated sample company) and prints what came out; see that module for what each step does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from metrics.calendar import day_start, utc_now
from metrics.money import fmt_major
from worker.cli.common import EXIT_FAILED, load_accounts, open_db, parse_as_of, refuse

# The report (plotly, jinja2), the sample company and the local server are imported inside the commands that
# use them, so other commands do not pay for them at start-up (README: start-up time).

DEMO_CUSTOMERS = 300
DIGEST_PREVIEW_LINES = 16


def summary_panel(metrics: dict[str, Any], at_risk_payload: dict[str, Any]) -> Panel:
    """The board summary as the terminal shows it (percentages written as the report writes them)."""
    from worker.report.render import pct

    currency = metrics["currency"]
    t12m, monthly = metrics["t12m"], metrics["monthly"]
    table = Table.grid(padding=(0, 3))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("MRR", fmt_major(metrics["mrr"], currency))
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
    from worker.accounts import ConnectError
    from worker.secrets import SecretError
    from worker.settings import get_settings

    console = Console()
    user_settings = get_settings()
    as_of = day_start(utc_now().date())
    target = out or user_settings.home / "reports" / "demo-report.html"
    # imported here: keeps the sample generator and the local server out of every other command's start-up
    from worker.demo.run import DemoFailed, default_end, demo_settings, run_demo

    settings = demo_settings(user_settings)  # its own home and database: the user's accounts are untouched
    engine = open_db(settings)
    try:
        outcome = run_demo(engine, settings, console, customers, default_end(), as_of, target)
    except (ConnectError, SecretError) as exc:
        refuse(str(exc))
    except DemoFailed as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    console.print(Panel(preview(outcome.digest), title="Slack digest preview (not sent)", expand=False))
    console.print(summary_panel(outcome.metrics, outcome.at_risk))
    console.print(f"How good the at-risk alerts have been (backtest): {outcome.backtest}")
    console.print(f"Report: [bold]{target}[/bold]  (open it in a browser; it works offline)")
    console.print(
        f"[dim]The demo keeps its own data in {settings.home}, apart from your accounts;"
        " explore it with:[/dim]"
    )
    # the command on a line of its own, never wrapped, so it copies whole
    console.print(
        f"  RETENTION_HOME={settings.home} RETENTION_DATABASE_URL= retention metrics demo", soft_wrap=True
    )


def report(
    name: str | None = typer.Argument(None, help="Account (default: every connected account)."),
    as_of: str | None = typer.Option(
        None, metavar="DATE", help="YYYY-MM-DD, 00:00 UTC that day (default: now)."
    ),
    out: Path = typer.Option(..., help="The HTML file to write (one self-contained file)."),
) -> None:
    """Write the HTML report: board summary, charts, cohorts, segments and at-risk accounts."""
    from worker.report.loader import write_report

    moment = parse_as_of(as_of)
    engine = open_db()
    accounts = load_accounts(engine, name)
    for account in accounts:
        target = out if len(accounts) == 1 else out.with_name(f"{out.stem}-{account.name}{out.suffix}")
        write_report(engine, account, moment, target)
        typer.echo(f"Wrote {target} ({account.name}).")


def register(app: typer.Typer) -> None:
    """Adds `demo` and `report` to the `retention` app."""
    app.command()(demo)
    app.command()(report)
