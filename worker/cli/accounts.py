"""Commands for connected accounts and the schema: connect, accounts, disconnect, db upgrade.

The key never travels as a command-line argument (it would sit in shell history and `ps`): it comes from
STRIPE_API_KEY or a hidden prompt. Output shows keys masked and webhook URLs not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
import typer

from integrations.stripe.config import DEFAULT_API_BASE
from worker.cli.common import open_db, print_json, refuse
from worker.cli.tables import Column, console, ident, show_table

if TYPE_CHECKING:
    from worker.secrets import Secret
    from worker.settings import Settings

# SQLModel, the Stripe SDK and cryptography are imported inside the commands that use them, so that
# `retention --help` and `retention accounts` start fast (README: start-up time).

db_app = typer.Typer(help="The database schema.", no_args_is_help=True)


def connect(
    name: str = typer.Argument(..., help="Our name for the account, e.g. acme."),
    api_base: str = typer.Option(DEFAULT_API_BASE, help="Stripe API base URL (or a compatible server)."),
    reporting_currency: str | None = typer.Option(
        None, help="Currency of every figure; default: the account's, else its invoices' most used, else usd."
    ),
    slack_webhook_url: str | None = typer.Option(
        None, help="Slack incoming webhook for this account (stored encrypted); default SLACK_WEBHOOK_URL."
    ),
    rps: float | None = typer.Option(None, help="Stripe requests per second for this account; 0 = no limit."),
) -> None:
    """Connect a Stripe account: reads the key from STRIPE_API_KEY (else a hidden prompt) and proves it."""
    from worker.accounts import ConnectError, connect_account
    from worker.secrets import Secret

    settings = _settings()
    key = _read_key(settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None)
    engine = open_db(settings)
    webhook = Secret(slack_webhook_url) if slack_webhook_url else None
    try:
        account = connect_account(engine, settings, name, key, api_base, reporting_currency, webhook, rps)
    except ConnectError as exc:
        refuse(str(exc))
    who = account.display_name or account.stripe_account or "account name not readable with this key"
    ident = f" ({account.stripe_account})" if account.display_name and account.stripe_account else ""
    mode = "live" if account.livemode else "test"
    typer.echo(
        f"Connected {account.name}: {who}{ident}, {mode} mode, reporting in "
        f"{account.reporting_currency.upper()}. Next: `retention sync {account.name}`."
    )


def accounts(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List connected accounts (keys masked)."""
    from worker.account_views import accounts_payload
    from worker.accounts import list_accounts

    rows = list_accounts(open_db(_settings()))
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
            "own" if a.slack_webhook_encrypted else "default",
            "default" if a.rps is None else f"{a.rps:g}",
        )
        for a in rows
    ]
    show_table(console(), None, columns, table, split=False)


def disconnect(name: str = typer.Argument(..., help="The account to remove.")) -> None:
    """Remove an account, its stored key and ALL its data (synced objects, ledger, metrics, alerts)."""
    from worker.accounts import ConnectError, disconnect_account

    engine = open_db(_settings())
    try:
        disconnect_account(engine, name)
    except ConnectError as exc:
        refuse(str(exc))
    typer.echo(f"Disconnected {name}: its key and all its data are deleted.")


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
    except click.exceptions.Abort:
        refuse("no Stripe API key: set STRIPE_API_KEY or run `retention connect` on a terminal to type it")


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app."""
    app.command()(connect)
    app.command()(accounts)
    app.command()(disconnect)
    app.add_typer(db_app, name="db")
