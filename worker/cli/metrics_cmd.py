"""`retention metrics [NAME] [--as-of DATE] [--json]`: cohort NRR / GRR / logo retention, segments, summary.

The JSON is the payload of worker.metrics_run.compute_metrics, exactly as docs/interface.md shapes it (one
account: the payload; several: `{"accounts": [payload, ...]}`, as the other revenue commands do). The terminal
form is a table (worker/cli/tables.py: it fits 80 columns) with the warnings grouped by kind under the
figures they belong to, so a caveat is never separated from its number. Running the command stores the
run like the nightly job does.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from metrics.summary import pct
from worker.cli.common import add_history_warning, load_accounts, open_db, parse_as_of, print_payloads, refuse
from worker.cli.tables import Amount, Cell, Column, console, figure, show_lines, show_table
from worker.cli.wording import LEGEND, show_warnings

COLUMNS = (
    Column(""),
    figure("start"),
    figure("expand"),
    figure("contract"),
    figure("churn"),
    figure("end"),
    figure("NRR"),
    figure("GRR"),
    figure("logos"),
    figure("kept"),
    figure("NRR+fees"),
)


def _ratio(value: float | None) -> str:
    return "-" if value is None else pct(value)


def _row(name: str, w: dict[str, Any], currency: str) -> list[Cell]:
    return [
        name,
        *(Amount(w[k], currency) for k in ("start", "expansion", "contraction", "churn", "end")),
        _ratio(w["nrr"]),
        _ratio(w["grr"]),
        _ratio(w["logo_retention"]),
        f"{w['retained']}/{w['customers']}",
        _ratio(w["nrr_including_one_time"]),
    ]


def render(
    account_name: str, payload: dict[str, Any], verbose: bool = False, out: Console | None = None
) -> None:
    """The terminal form: headline, what the columns mean, summary, segments, each followed by its warnings
    grouped by kind (`verbose`: every warning)."""
    out = out or console()
    currency = payload["currency"]
    cur = currency.upper()
    mrr = Amount(payload["mrr"], currency).text(whole=False)
    show_lines(out, [f"{account_name} as of {payload['as_of'][:10]}: MRR {mrr}"])
    rows = [_row("T12M", payload["t12m"], currency), _row("monthly", payload["monthly"], currency)]
    show_table(out, f"Retention of the customers paying at the window's start ({cur} a month)", COLUMNS, rows)
    show_lines(
        out,
        [
            f"Monthly NRR {_ratio(payload['monthly']['nrr'])} a month is "
            f"{_ratio(payload['monthly']['nrr_annualized'])} annualized (compounded over 12 months).",
            *(f"{key}: {meaning}." for key, meaning in LEGEND),
        ],
    )
    show_warnings(out, payload["warnings"], verbose)
    show_lines(out, [payload["summary"]["sentence"], payload["summary"]["scenario"]["sentence"]])
    for kind, title in (("plan", "plan at t0"), ("size", "size band at t0"), ("cohort", "signup month")):
        segments = payload["segments"][kind]
        out.print()
        show_table(
            out,
            f"T12M by {title} ({cur} a month)",
            COLUMNS,
            [_row(name, w, currency) for name, w in segments.items()],
        )
        show_warnings(out, [w for seg in segments.values() for w in seg["warnings"]], verbose, indent=2)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app."""

    @app.command()
    def metrics(
        name: str | None = typer.Argument(None, help="Account name (default: every connected account)."),
        as_of: str | None = typer.Option(
            None, "--as-of", metavar="DATE", help="YYYY-MM-DD, 00:00 UTC (default: today)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the JSON payload (docs/interface.md)."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="List every warning, not one per kind."),
        bands: str | None = typer.Option(
            None,
            "--size-bands",
            help="Size band edges a month, e.g. 100,1000,10000 "
            "(default: RETENTION_SIZE_BANDS or 100,1000,10000).",
        ),
    ) -> None:
        """Cohort NRR, GRR and logo retention (trailing 12 months, last month), by segment, with warnings."""
        from worker.metrics_run import metrics_of_accounts, size_bands  # heavy: loaded only when used

        when = parse_as_of(as_of)
        try:
            edges = size_bands(bands)
        except ValueError as exc:
            refuse(str(exc))
        engine = open_db()
        accounts = load_accounts(engine, name)
        payloads = metrics_of_accounts(engine, accounts, when, edges)
        for account, payload in zip(accounts, payloads, strict=True):
            add_history_warning(engine, account, when, payload)
        if as_json:
            print_payloads(payloads)
            return
        for account, payload in zip(accounts, payloads, strict=True):
            render(account.name, payload, verbose)
