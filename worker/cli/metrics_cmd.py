"""`retention metrics [NAME] [--as-of DATE] [--json]`: cohort NRR / GRR / logo retention, segments, summary.

The JSON is the payload of worker.metrics_run.compute_metrics, exactly as docs/interface.md shapes it (one
account: the payload; several: `{"accounts": [payload, ...]}`, as the other revenue commands do). The terminal
form is a table with every warning printed under the figure it belongs to, so a caveat is never separated
from its number. Running the command stores the run like the nightly job does.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from metrics.summary import pct
from worker.cli.common import load_accounts, open_db, parse_as_of, print_payloads, refuse
from worker.metrics_run import metrics_of_accounts, size_bands
from worker.models import Account


def _ratio(value: float | None) -> str:
    return "-" if value is None else pct(value)


def _money(value: float) -> str:
    """Whole major units in the tables (the currency is in the title; --json has the cents)."""
    return f"{value:,.0f}"


def _row(table: Table, name: str, w: dict[str, Any]) -> None:
    table.add_row(
        name,
        _money(w["start"]),
        _money(w["expansion"]),
        _money(w["contraction"]),
        _money(w["churn"]),
        _money(w["end"]),
        _ratio(w["nrr"]),
        _ratio(w["grr"]),
        _ratio(w["logo_retention"]),
        f"{w['retained']}/{w['customers']}",
        _ratio(w["nrr_including_one_time"]),
    )


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in (
        "",
        "start",
        "expand",
        "contract",
        "churn",
        "end",
        "NRR",
        "GRR",
        "logos",
        "kept",
        "NRR+fees",
    ):
        table.add_column(column, justify="left" if not column else "right", no_wrap=True)
    return table


def render(account: Account, payload: dict[str, Any]) -> None:
    """The terminal form: headline, summary, segments, each followed by its warnings.

    Eleven columns do not fit 80 characters: output that is not a terminal (a pipe, a file, a log) gets 120.
    """
    console = Console(width=None if sys.stdout.isatty() else 120)
    currency = payload["currency"]
    console.print(
        f"[bold]{account.name}[/bold] as of {payload['as_of']}: MRR "
        f"{_money(payload['mrr'])} {currency.upper()}"
    )
    head = _table(f"Retention of the customers paying at the window's start ({currency.upper()} a month)")
    _row(head, "T12M", payload["t12m"])
    _row(head, "monthly", payload["monthly"])
    console.print(head)
    console.print(
        f"Monthly NRR {_ratio(payload['monthly']['nrr'])} a month is "
        f"{_ratio(payload['monthly']['nrr_annualized'])} annualized (compounded over 12 months)."
    )
    for w in payload["warnings"]:
        console.print(f"[yellow]warning[/yellow] {w['code']}: {w['message']}", highlight=False)
    console.print(payload["summary"]["sentence"])
    console.print(payload["summary"]["scenario"]["sentence"])
    for kind, title in (("plan", "plan at t0"), ("size", "size band at t0"), ("cohort", "signup month")):
        table = _table(f"T12M by {title} ({currency.upper()} a month)")
        notes = []
        for name, w in payload["segments"][kind].items():
            _row(table, name, w)
            notes.extend(w["warnings"])
        console.print(table)
        for w in notes:
            console.print(f"  [yellow]warning[/yellow] {w['code']}: {w['message']}", highlight=False)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app."""

    @app.command()
    def metrics(
        name: str | None = typer.Argument(None, help="Account name (default: every connected account)."),
        as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD, 00:00 UTC (default: today)."),
        as_json: bool = typer.Option(False, "--json", help="Print the JSON payload (docs/interface.md)."),
        bands: str | None = typer.Option(
            None,
            "--size-bands",
            help="Size band edges a month, e.g. 100,1000,10000 "
            "(default: RETENTION_SIZE_BANDS or 100,1000,10000).",
        ),
    ) -> None:
        """Cohort NRR, GRR and logo retention (trailing 12 months, last month), by segment, with warnings."""
        when = parse_as_of(as_of)
        try:
            edges = size_bands(bands)
        except ValueError as exc:
            refuse(str(exc))
        engine = open_db()
        accounts = load_accounts(engine, name)
        payloads = metrics_of_accounts(engine, accounts, when, edges)
        if as_json:
            print_payloads(payloads)
            return
        for account, payload in zip(accounts, payloads, strict=True):
            render(account, payload)
