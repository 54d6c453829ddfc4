"""At-risk commands: `at-risk`, `backtest`, `alert`, `churned` (docs/interface.md, docs/at-risk.md).

They read the ledger and stored Stripe rows; an account whose ledger is still empty is rebuilt first. Where
no NAME is given and several accounts are connected, JSON output is `{"accounts": [payload, ...]}` (each
payload names its account); with one account it is the payload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from integrations.slack.as_read import message_lines
from metrics.money import fmt_major
from worker.cli.common import (
    EXIT_FAILED,
    add_history_warning,
    load_accounts,
    open_db,
    parse_as_of,
    print_json,
    print_payloads,
    refuse,
)
from worker.cli.tables import console, plural, show_lines
from worker.cli.wording import show_warnings

if TYPE_CHECKING:
    from worker.alerts import AlertResult
    from worker.models import Account

# The risk screen, the alerts and SQLModel are imported inside the commands (start-up time: README).


def _echo_customers(
    heading: str,
    rows: list[dict[str, Any]],
    line: Callable[[dict[str, Any]], str],
    link: bool,
    warnings: list[dict[str, str]],
) -> None:
    """The heading, then per customer a numbered line with its signals indented below it.

    Plain lines read well in a terminal, a log and an email alike; they wrap at spaces to the width
    (worker/cli/tables.py), so an id, an amount or a link is never cut.
    """
    out = console()
    show_lines(out, heading.splitlines())
    show_warnings(out, warnings, verbose=False)
    for n, row in enumerate(rows, start=1):
        show_lines(out, [f"{n}. {row['name']} ({row['customer_id']}): {line(row)}"], hang=3)
        show_lines(
            out,
            [
                f"{signal['code']}: {signal['detail']}{_track(signal.get('track_record'))}"
                for signal in row["signals"]
            ],
            indent=3,
            hang=5,
        )
        if link:
            show_lines(out, [row["dashboard_url"]], indent=3)


def _track(record: dict[str, int] | None) -> str:
    """A signal's track record in words, once the backtest has seen enough cases of it."""
    if not record:
        return ""
    track = f"{record['hits']} of {record['flags']} accounts with this signal churned or contracted"
    return f" [{track} within 120 days]"


def _show_at_risk(account: Account, payload: dict[str, Any]) -> None:
    rows, cur = payload["accounts"], payload["currency"]

    def line(row: dict[str, Any]) -> str:
        renewal = f", renews {row['renewal_date']}" if row["renewal_date"] else ""
        return f"{fmt_major(row['mrr'], cur)} MRR at risk, score {row['score']:,.2f}{renewal}"

    at_risk = fmt_major(payload["mrr_at_risk"], cur)
    heading = (
        f"{account.name}: {plural(len(rows), 'account')} at risk, {at_risk} MRR at risk "
        f"as of {payload['as_of']}"
    )
    if rows:  # the score is not a figure a founder knows: say what it is once, under the heading
        heading += (
            "\n(score: the MRR at risk weighted by how strongly its signals foretell churn, at most the MRR; "
            "highest first)"
        )
    _echo_customers(heading, rows, line, True, payload.get("warnings", []))


def _show_churned(account: Account, payload: dict[str, Any]) -> None:
    rows, cur = payload["accounts"], payload["currency"]

    def line(row: dict[str, Any]) -> str:
        first = (
            f"first signal {row['first_signal_on']}, {plural(row['days_before'], 'day')} before"
            if row["first_signal_on"]
            else "no signal before churning"
        )
        return f"{fmt_major(row['mrr'], cur)} MRR lost on {row['churned_on']}; {first}"

    months, as_of = payload["window_months"], payload["as_of"]
    if not rows:
        heading = f"{account.name}: no account churned in the last {months} months (as of {as_of})"
    elif len(rows) == 1:
        heading = f"{account.name}: the one account that churned in the last {months} months (as of {as_of})"
    else:
        heading = (
            f"{account.name}: the {len(rows)} largest churned accounts of the last {months} months "
            f"(as of {as_of})"
        )
    _echo_customers(heading, rows, line, False, payload.get("warnings", []))


def _print_each(
    name: str | None,
    as_of: str | None,
    as_json: bool,
    build: str,
    show: Callable[[Account, dict[str, Any]], None],
) -> None:
    """Each account's payload (`build`: the name of its function in worker/risk.py, or `module.function` of
    another worker module): shown as soon as it is ready, or printed together as JSON at the end."""
    import importlib

    from worker.payloads import named_payloads

    module, _, function = build.rpartition(".")
    builder = getattr(importlib.import_module(f"worker.{module or 'risk'}"), function)
    moment = parse_as_of(as_of)
    engine = open_db()
    payloads = []
    for account, payload in named_payloads(engine, load_accounts(engine, name), moment, builder):
        add_history_warning(engine, account, moment, payload)
        payloads.append(payload)
        if not as_json:
            show(account, payload)
    if as_json:
        print_payloads(payloads)


def at_risk_cmd(
    name: str | None = typer.Argument(None, help="Connected account (default: every account)."),
    as_of: str | None = typer.Option(
        None, "--as-of", metavar="DATE", help="YYYY-MM-DD, 00:00 UTC (default: now)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Paying customers showing a risk signal as of the date (what was known then), ranked by MRR at risk
    times the strength of the evidence (the score)."""
    _print_each(name, as_of, as_json, "at_risk", _show_at_risk)


def _show_backtest(account: Account, payload: dict[str, Any]) -> None:
    cur = payload["currency"]
    lines = [f"{account.name}: backtest as of {payload['as_of']} at {len(payload['points'])} past dates", ""]
    lines += [payload["line"], ""]
    lines += [
        f"{code}: {f['hits']} of {f['flags']} alerts followed by churn or contraction within 120 days"
        for code, f in payload["by_signal"].items()
    ]
    lines += [
        f"missed: {row['name']} ({row['customer_id']}), {fmt_major(row['mrr'], cur)} MRR, "
        f"churned {row['churned_on']}"
        for row in payload["missed"]
    ]
    out = console()
    show_lines(out, lines, hang=2)
    show_warnings(out, payload["warnings"], verbose=False)


def backtest_cmd(
    name: str | None = typer.Argument(None, help="Connected account (default: every account)."),
    as_of: str | None = typer.Option(
        None, "--as-of", metavar="DATE", help="YYYY-MM-DD, 00:00 UTC (default: now)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """How good the at-risk alerts have been on the account's own history: precision, recall of churned
    MRR caught 28+ days ahead, noise and lead time at 12 monthly dates 4 to 15 months back."""
    _print_each(
        name, as_of, as_json, "backtest.backtest" if as_json else "backtest.backtest_text", _show_backtest
    )


def _report(result: AlertResult, dry_run: bool) -> None:
    """A dry run shows the digest as a person reads it in Slack (plain text, wrapped to the width); a real
    run says what was sent."""
    if dry_run:
        out = console()
        if not result.payloads:  # nothing new: the result's text says so
            show_lines(out, [result.text or f"{result.account}: nothing to post"])
            return
        show_lines(out, [f"{result.account}: the digest this run would post (dry run, nothing sent):", ""])
        for line in message_lines(result.payloads):
            if line:
                show_lines(out, [line], indent=2, hang=4)
            else:
                out.print()
        return
    if result.error:
        typer.echo(f"error: {result.error}", err=True)
    elif result.skipped:
        typer.echo(f"note: {result.skipped}", err=True)
    typer.echo(
        f"{result.account}: {result.at_risk} at risk; {plural(result.sent, 'alert')} sent in "
        f"{plural(result.messages, 'message')}, {result.pending} pending"
    )


def _as_json(result: AlertResult, dry_run: bool) -> dict[str, Any]:
    """One account's alert run for `--json`: what was sent, or with `--dry-run` the Slack payloads."""
    entry: dict[str, Any] = {
        "account": result.account,
        "at_risk": result.at_risk,
        "sent": result.sent,
        "messages": result.messages,
        "pending": result.pending,
        "error": result.error,
        "skipped": result.skipped,
    }
    if dry_run:
        entry["text"] = result.text
        entry["payloads"] = result.payloads
    return entry


def alert_cmd(
    name: str | None = typer.Argument(None, help="Connected account (default: every account)."),
    as_of: str | None = typer.Option(
        None, "--as-of", metavar="DATE", help="YYYY-MM-DD, 00:00 UTC (default: now)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the Slack message instead of sending it."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON (with --dry-run: the Slack payloads that would be posted)."
    ),
) -> None:
    """Post the at-risk digest to Slack: new or changed signals and recoveries, never the same alert twice."""
    from worker.alerts import alert_accounts, missing_webhook
    from worker.settings import get_settings

    moment = parse_as_of(as_of)
    settings = get_settings()
    engine = open_db(settings)
    accounts = load_accounts(engine, name)
    if not dry_run and name is not None:  # one account asked for by name: say now why it cannot be alerted
        missing = missing_webhook(settings, accounts[0])
        if missing:
            refuse(missing)
    failed, entries = False, []
    for result in alert_accounts(engine, settings, accounts, moment, dry_run=dry_run):
        if as_json:
            entries.append(_as_json(result, dry_run))
        else:
            _report(result, dry_run)
        failed = failed or result.error is not None
    if as_json:
        print_json({"accounts": entries})
    if failed:
        raise typer.Exit(EXIT_FAILED)


def churned_cmd(
    name: str | None = typer.Argument(None, help="Connected account (default: every account)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    as_of: str | None = typer.Option(
        None, "--as-of", metavar="DATE", help="YYYY-MM-DD, 00:00 UTC (default: now)."
    ),
) -> None:
    """Churn post-mortem: the 5 largest churned accounts of 6 months and when their first signal appeared."""
    _print_each(name, as_of, as_json, "churned", _show_churned)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app."""
    app.command("at-risk")(at_risk_cmd)
    app.command("backtest")(backtest_cmd)
    app.command("alert")(alert_cmd)
    app.command("churned")(churned_cmd)
