"""Commands for connected accounts and the schema: connect, update, accounts, disconnect, db upgrade.

Secrets never travel as command-line arguments (they would sit in shell history and `ps`): the key comes from
STRIPE_API_KEY, a webhook URL from SLACK_WEBHOOK_URL, else each from a hidden prompt. Output shows keys
masked and webhook URLs not at all.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click
import typer

from integrations.stripe.config import DEFAULT_API_BASE
from worker.cli.common import open_db, print_json, read_db, refuse
from worker.cli.tables import Column, console, ident, show_table

if TYPE_CHECKING:
    from worker.secrets import Secret
    from worker.settings import Settings

# SQLModel, the Stripe SDK and cryptography are imported inside the commands that use them, so that
# `retention --help` and `retention accounts` start fast; `accounts` reads without SQLAlchemy at all
# (README: start-up time).

# End of input at a prompt (no terminal, or Ctrl-D): Typer's own Abort, and click's from older Typer releases.
ABORTED = (typer.Abort, click.exceptions.Abort)

db_app = typer.Typer(help="The database schema.", no_args_is_help=True)


def connect(
    name: str = typer.Argument(..., help="Our name for the account, e.g. acme."),
    api_base: str = typer.Option(DEFAULT_API_BASE, help="Stripe API base URL (or a compatible server)."),
    reporting_currency: str | None = typer.Option(
        None, help="Currency of every figure; default: the account's, else its invoices' most used, else usd."
    ),
    slack_webhook: bool = typer.Option(
        False,
        "--slack-webhook",
        help="Give the account its own Slack webhook (stored encrypted), read from SLACK_WEBHOOK_URL or a "
        "hidden prompt; without it the account uses SLACK_WEBHOOK_URL when alerts are sent.",
    ),
    rps: float | None = typer.Option(None, help="Stripe requests per second for this account; 0 = no limit."),
) -> None:
    """Connect a Stripe account: reads the key from STRIPE_API_KEY (else a hidden prompt) and proves it."""
    from worker.accounts import ConnectError, connect_account
    from worker.secrets import SecretError

    settings = _settings()
    key = _read_key(settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None)
    webhook = _read_webhook(settings) if slack_webhook else None
    engine = open_db(settings)
    try:
        account = connect_account(engine, settings, name, key, api_base, reporting_currency, webhook, rps)
    except (ConnectError, SecretError) as exc:
        refuse(str(exc))
    who = account.display_name or account.stripe_account or "account name not readable with this key"
    ident = f" ({account.stripe_account})" if account.display_name and account.stripe_account else ""
    mode = "live" if account.livemode else "test"
    typer.echo(
        f"Connected {account.name}: {who}{ident}, {mode} mode, reporting in "
        f"{account.reporting_currency.upper()}. Next: `retention sync {account.name}`."
    )


def update(
    name: str = typer.Argument(..., help="The account to change."),
    reporting_currency: str | None = typer.Option(
        None, help="Currency of every figure from now on (the stored history is rebuilt in it)."
    ),
    slack_webhook: bool | None = typer.Option(
        None,
        "--slack-webhook/--no-slack-webhook",
        help="Set the account's own Slack webhook (read from SLACK_WEBHOOK_URL or a hidden prompt), or "
        "remove it so that SLACK_WEBHOOK_URL serves.",
        show_default=False,
    ),
    rps: float | None = typer.Option(None, help="Stripe requests per second for this account; 0 = no limit."),
    api_base: str | None = typer.Option(None, help="A new Stripe API base URL (the key is proven there)."),
    rotate_key: bool = typer.Option(
        False,
        "--rotate-key",
        help="Replace the stored key: read from STRIPE_API_KEY (else a hidden prompt), proven with one read, "
        "and it must open the same Stripe account.",
    ),
) -> None:
    """Change an account's settings in place, keeping all its data."""
    from worker.account_update import AccountChanges, restate, update_account
    from worker.accounts import ConnectError
    from worker.secrets import SecretError

    settings = _settings()
    key = (
        _read_key(settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None)
        if rotate_key
        else None
    )
    webhook = _read_webhook(settings) if slack_webhook else None
    changes = AccountChanges(
        reporting_currency=reporting_currency,
        slack_webhook=webhook,
        drop_slack_webhook=slack_webhook is False,
        rps=rps,
        api_base=api_base,
        api_key=key,
    )
    engine = open_db(settings)
    try:
        outcome = update_account(engine, settings, name, changes)
    except (ConnectError, SecretError) as exc:
        refuse(str(exc))
    if not outcome.changed:
        typer.echo(f"{name}: nothing changed (the settings were already so).")
        return
    typer.echo(f"Updated {name}: {'; '.join(outcome.changed)}. Its data is kept.")
    if outcome.currency_changed:
        rebuilt = restate(engine, outcome.account)
        if rebuilt:
            typer.echo(rebuilt)


def accounts(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List connected accounts (keys masked)."""
    from worker.account_views import account_rows, accounts_payload

    with read_db(_settings()) as db:
        rows = account_rows(db)
    if as_json:
        print_json(accounts_payload(rows))
        return
    if not rows:
        typer.echo("No account is connected yet: run `retention connect NAME`.")
        return
    columns = [ident(h) for h in ("account", "stripe")] + [Column("name")]
    columns += [ident(h) for h in ("currency", "key", "api base", "slack", "rps")]
    table = [
        (
            a.name,
            a.stripe_account or "-",
            a.display_name or "",
            a.reporting_currency.upper(),
            a.key_mask,
            a.api_base,
            "own" if a.own_webhook else "default",
            "default" if a.rps is None else f"{a.rps:g}",
        )
        for a in rows
    ]
    show_table(console(), None, columns, table, split=False)


def disconnect(
    name: str = typer.Argument(..., help="The account to remove."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask (needed without a terminal)."),
) -> None:
    """Remove an account, its stored key and ALL its data (synced objects, ledger, metrics, alerts).

    On a terminal it asks first; without one (a script, a pipe) it refuses unless --yes is given.
    """
    from worker.accounts import ConnectError, disconnect_account, find_account

    engine = open_db(_settings())
    if not find_account(engine, name):
        refuse(f"no account named {name!r}: see `retention accounts`")
    if not yes:
        if not on_terminal():
            refuse(
                f"disconnecting deletes {name!r} and all its data: add --yes to confirm (no terminal to ask)"
            )
        try:
            confirmed = typer.confirm(f"Delete account {name!r}, its key and ALL its stored data?")
        except ABORTED:
            confirmed = False
        if not confirmed:
            refuse(f"nothing deleted: {name!r} stays connected")
    try:
        disconnect_account(engine, name)
    except ConnectError as exc:
        refuse(str(exc))
    typer.echo(f"Disconnected {name}: its key and all its data are deleted.")


def on_terminal() -> bool:
    """Whether a person can answer a question: stdin is a terminal."""
    return sys.stdin.isatty()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database to the newest schema (other commands also do this on their own)."""
    from worker.account_views import shown_database_url

    settings = _settings()
    open_db(settings)
    typer.echo(f"Database {shown_database_url(settings)} is at the newest schema.")


def _settings() -> Settings:
    from worker.settings import ConfigError, get_settings

    try:
        return get_settings()
    except ConfigError as exc:
        refuse(str(exc))


def _read_key(from_env: str | None) -> Secret:
    from worker.secrets import Secret

    if from_env:
        return Secret(from_env.strip())
    try:
        return Secret(str(typer.prompt("Stripe API key (input hidden)", hide_input=True)).strip())
    except ABORTED:
        refuse("no Stripe API key: set STRIPE_API_KEY or run `retention connect` on a terminal to type it")


def _read_webhook(settings: Settings) -> Secret:
    """The account's own webhook URL: SLACK_WEBHOOK_URL, else a hidden prompt; never a command-line argument
    (it would show in `ps` and shell history)."""
    from worker.secrets import Secret

    given = settings.slack_webhook_url.get_secret_value().strip() if settings.slack_webhook_url else ""
    if given:
        return Secret(given)
    try:
        return Secret(str(typer.prompt("Slack incoming webhook URL (input hidden)", hide_input=True)).strip())
    except ABORTED:
        refuse("no Slack webhook URL: set SLACK_WEBHOOK_URL or run the command on a terminal to type it")


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app."""
    app.command()(connect)
    app.command()(update)
    app.command()(accounts)
    app.command()(disconnect)
    app.add_typer(db_app, name="db")
