"""At-risk commands: `at-risk`, `backtest`, `alert`, `churned` (docs/interface.md, docs/at-risk.md).

They read the ledger and stored Stripe rows; an account whose ledger is still empty is rebuilt first. Where
no NAME is given and several accounts are connected, JSON output is `{"accounts": [payload, ...]}` (each
payload names its account); with one account it is the payload.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import typer
from sqlalchemy.engine import Engine

from worker.alerts import AlertResult, alert_accounts, missing_webhook
from worker.backtest import backtest_line, backtest_payload, compute_backtest
from worker.cli.common import EXIT_FAILED, load_accounts, open_db, parse_as_of, print_payloads, refuse
from worker.models import Account
from worker.payloads import PayloadFn, named_payloads
from worker.risk import at_risk, churned
from worker.settings import get_settings


def _echo_customers(
    heading: str, rows: list[dict[str, Any]], line: Callable[[dict[str, Any]], str], link: bool
) -> None:
    """The heading, then per customer a numbered line with its signals indented below it.

    Plain lines read well in a terminal, a log and an email alike.
    """
    typer.echo(heading)
    for n, row in enumerate(rows, start=1):
        typer.echo(f"{n}. {row['name']} ({row['customer_id']}): {line(row)}")
        for signal in row["signals"]:
            typer.echo(f"   {signal['code']}: {signal['detail']}{_track(signal.get('track_record'))}")
        if link:
            typer.echo(f"   {row['dashboard_url']}")


def _track(record: dict[str, int] | None) -> str:
    """A signal's track record in words, once the backtest has seen enough cases of it."""
    if not record:
        return ""
    track = f"{record['hits']} of {record['flags']} accounts with this signal churned or contracted"
    return f" [{track} within 120 days]"


def _show_at_risk(account: Account, payload: dict[str, Any]) -> None:
    rows, cur = payload["accounts"], payload["currency"].upper()

    def line(row: dict[str, Any]) -> str:
        renewal = f", renews {row['renewal_date']}" if row["renewal_date"] else ""
        return f"{row['mrr']:,.2f} {cur} MRR at risk, score {row['score']:,.2f}{renewal}"

    heading = (
        f"{account.name}: {len(rows)} account(s) at risk, {payload['mrr_at_risk']:,.2f} {cur} MRR at "
        f"risk as of {payload['as_of']}"
    )
    _echo_customers(heading, rows, line, link=True)


def _show_churned(account: Account, payload: dict[str, Any]) -> None:
    rows, cur = payload["accounts"], payload["currency"].upper()

    def line(row: dict[str, Any]) -> str:
        first = (
            f"first signal {row['first_signal_on']}, {row['days_before']} days before"
            if row["first_signal_on"]
            else "no signal before churning"
        )
        return f"{row['mrr']:,.2f} {cur} MRR lost on {row['churned_on']}; {first}"

    heading = (
        f"{account.name}: the {len(rows)} largest churned account(s) of the last "
        f"{payload['window_months']} months (as of {payload['as_of']})"
    )
    _echo_customers(heading, rows, line, link=False)


def _print_each(
    name: str | None,
    as_of: str | None,
    as_json: bool,
    build: PayloadFn,
    show: Callable[[Account, dict[str, Any]], None],
) -> None:
    """Each account's payload: shown as soon as it is ready, or printed together as JSON at the end."""
    moment = parse_as_of(as_of)
    engine = open_db()
    payloads = []
    for account, payload in named_payloads(engine, load_accounts(engine, name), moment, build):
        payloads.append(payload)
        if not as_json:
            show(account, payload)
    if as_json:
        print_payloads(payloads)


def at_risk_cmd(
    name: str | None = typer.Argument(None, help="Connected account (default: every account)."),
    as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD, 00:00 UTC (default: now)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Paying customers showing a risk signal as of the date (what was known then), ranked by MRR at risk
    times the strength of the evidence (the score)."""
    _print_each(name, as_of, as_json, at_risk, _show_at_risk)


def _show_backtest(account: Account, payload: dict[str, Any]) -> None:
    typer.echo(f"{account.name}: backtest as of {payload['as_of']} at {len(payload['points'])} points")
    typer.echo(f"  {payload['line']}")
    for code, figures in payload["by_signal"].items():
        typer.echo(
            f"  {code}: {figures['hits']} of {figures['flags']} flags followed by churn or contraction"
        )
    for row in payload["missed"]:
        typer.echo(
            f"  missed: {row['name']} ({row['customer_id']}) {row['mrr']:,.2f} MRR, "
            f"churned {row['churned_on']}"
        )
    for warning in payload["warnings"]:
        typer.echo(f"  warning: {warning['message']}")


def _backtest_json(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    return backtest_payload(compute_backtest(engine, account, as_of))


def _backtest_text(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    result = compute_backtest(engine, account, as_of)
    return {**backtest_payload(result), "line": backtest_line(result)}


def backtest_cmd(
    name: str | None = typer.Argument(None, help="Connected account (default: every account)."),
    as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD, 00:00 UTC (default: now)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """How good the at-risk alerts have been on the account's own history: precision, recall of churned
    MRR caught 28+ days ahead, noise and lead time at 12 monthly points 4 to 15 months back."""
    _print_each(name, as_of, as_json, _backtest_json if as_json else _backtest_text, _show_backtest)


def _report(result: AlertResult, dry_run: bool) -> None:
    if dry_run:
        typer.echo(result.text or "")
        if result.payloads:
            typer.echo("\nBlock Kit payload(s), not sent:")
            typer.echo(json.dumps(result.payloads, indent=2))
        return
    if result.error:
        typer.echo(f"error: {result.error}", err=True)
    elif result.skipped:
        typer.echo(f"note: {result.skipped}", err=True)
    typer.echo(
        f"{result.account}: {result.at_risk} at risk; {result.sent} alert(s) sent in "
        f"{result.messages} message(s), {result.pending} pending"
    )


def alert_cmd(
    name: str | None = typer.Argument(None, help="Connected account (default: every account)."),
    as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD, 00:00 UTC (default: now)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the Slack message instead of sending it."),
) -> None:
    """Post the at-risk digest to Slack: new or changed signals and recoveries, never the same alert twice."""
    moment = parse_as_of(as_of)
    settings = get_settings()
    engine = open_db(settings)
    accounts = load_accounts(engine, name)
    if not dry_run and name is not None:  # one account asked for by name: say now why it cannot be alerted
        missing = missing_webhook(settings, accounts[0])
        if missing:
            refuse(missing)
    failed = False
    for result in alert_accounts(engine, settings, accounts, moment, dry_run=dry_run):
        _report(result, dry_run)
        failed = failed or result.error is not None
    if failed:
        raise typer.Exit(EXIT_FAILED)


def churned_cmd(
    name: str | None = typer.Argument(None, help="Connected account (default: every account)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD, 00:00 UTC (default: now)."),
) -> None:
    """Churn post-mortem: the 5 largest churned accounts of 6 months and when their first signal appeared."""
    _print_each(name, as_of, as_json, churned, _show_churned)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app."""
    app.command("at-risk")(at_risk_cmd)
    app.command("backtest")(backtest_cmd)
    app.command("alert")(alert_cmd)
    app.command("churned")(churned_cmd)
