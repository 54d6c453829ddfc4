"""At-risk commands: `at-risk`, `alert`, `churned` (shared/CLI.md, METRICS.md section 7).

They read the ledger and stored Stripe rows; an account whose ledger is still empty is rebuilt first. Where
no NAME is given and several accounts are connected, JSON output is `{"accounts": [payload, ...]}` (each
payload names its account); with one account it is the payload.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer

from worker.accounts import slack_webhook
from worker.alerts import AlertResult, run_alerts
from worker.cli.common import (
    EXIT_FAILED,
    load_accounts,
    open_db,
    parse_as_of,
    print_payloads,
    refuse,
)
from worker.models import Account
from worker.rebuild import ensure_ledger
from worker.risk import at_risk, churned
from worker.settings import get_settings


def _show_at_risk(account: Account, payload: dict[str, Any]) -> None:
    """One block per customer: plain lines read well in a terminal, a log and an email alike."""
    rows, cur = payload["accounts"], payload["currency"].upper()
    typer.echo(
        f"{account.name}: {len(rows)} account(s) at risk, {payload['mrr_at_risk']:,.2f} {cur} MRR at "
        f"risk as of {payload['as_of']}"
    )
    for n, row in enumerate(rows, start=1):
        renewal = f", renews {row['renewal_date']}" if row["renewal_date"] else ""
        typer.echo(
            f"{n}. {row['name']} ({row['customer_id']}): {row['mrr']:,.2f} {cur} MRR at risk, "
            f"score {row['score']:,.2f}{renewal}"
        )
        for signal in row["signals"]:
            typer.echo(f"   {signal['code']}: {signal['detail']}")
        typer.echo(f"   {row['dashboard_url']}")


def _show_churned(account: Account, payload: dict[str, Any]) -> None:
    rows, cur = payload["accounts"], payload["currency"].upper()
    typer.echo(
        f"{account.name}: the {len(rows)} largest churned account(s) of the last "
        f"{payload['window_months']} months (as of {payload['as_of']})"
    )
    for n, row in enumerate(rows, start=1):
        first = (
            f"first signal {row['first_signal_on']}, {row['days_before']} days before"
            if row["first_signal_on"]
            else "no signal before churning"
        )
        typer.echo(
            f"{n}. {row['name']} ({row['customer_id']}): {row['mrr']:,.2f} {cur} MRR lost on "
            f"{row['churned_on']}; {first}"
        )
        for signal in row["signals"]:
            typer.echo(f"   {signal['code']}: {signal['detail']}")


def at_risk_cmd(
    name: str | None = typer.Argument(None, help="Connected account (default: every account)."),
    as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD, 00:00 UTC (default: now)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Paying customers showing a risk signal, largest MRR at risk first."""
    moment = parse_as_of(as_of)
    engine = open_db()
    payloads = []
    for account in load_accounts(engine, name):
        ensure_ledger(engine, account)
        payload = {"account": account.name, **at_risk(engine, account, moment)}
        payloads.append(payload)
        if not as_json:
            _show_at_risk(account, payload)
    if as_json:
        print_payloads(payloads)


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
    if not dry_run and name is not None and slack_webhook(settings, accounts[0]) is None:
        refuse(
            f"account {name!r} has no Slack webhook: set SLACK_WEBHOOK_URL or reconnect with "
            "--slack-webhook-url (or use --dry-run)"
        )
    failed = False
    for account in accounts:
        ensure_ledger(engine, account)
        result = run_alerts(engine, settings, account, moment, dry_run=dry_run)
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
    moment: datetime = parse_as_of(as_of)
    engine = open_db()
    payloads = []
    for account in load_accounts(engine, name):
        ensure_ledger(engine, account)
        payload = {"account": account.name, **churned(engine, account, moment)}
        payloads.append(payload)
        if not as_json:
            _show_churned(account, payload)
    if as_json:
        print_payloads(payloads)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app."""
    app.command("at-risk")(at_risk_cmd)
    app.command("alert")(alert_cmd)
    app.command("churned")(churned_cmd)
