"""Connected accounts end to end: `retention connect/accounts/disconnect/db upgrade` against a local Stripe.

Storage tests run on SQLite and PostgreSQL. The secret tests look where a key could leak: the database file's
bytes (and PostgreSQL's rows), every log record at DEBUG (stripe's own logger included), the command output.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, select
from typer.testing import CliRunner

import worker.tables  # noqa: F401  (every table, for the disconnect tests)
from metrics.tables import table_of
from worker.accounts import ConnectError, connect_account, disconnect_account, slack_webhook, stripe_config
from worker.cli.main import app
from worker.db import ensure_schema, session_scope
from worker.demo import builders
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.models import Account
from worker.secrets import Secret, decrypt
from worker.settings import get_settings

KEY = "sk_test_51HxAcmeSecretPlaintext9876"
RESTRICTED = "rk_test_51HxAcmeRestrictedPlain5432"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/AcmeWebhookSecretPath"


@pytest.fixture
def world() -> StripeWorld:
    return StripeWorld(builders.account("acct_1Acme", "Acme Inc.", default_currency="eur"))


@pytest.fixture
def server(world: StripeWorld) -> Iterator[FakeStripe]:
    with FakeStripe(world, api_keys=[KEY], restricted_keys=[RESTRICTED]) as fake:
        yield fake


def connect(
    cli: CliRunner,
    base: str,
    name: str = "acme",
    *args: str,
    key: str | None = KEY,
    prompt: str | None = None,
    webhook: str | None = None,
) -> Any:
    env = {"STRIPE_API_KEY": key} if key is not None else {}
    if webhook is not None:
        env["SLACK_WEBHOOK_URL"] = webhook
    return cli.invoke(app, ["connect", name, "--api-base", base, *args], env=env, input=prompt)


def stored(url: str) -> list[Account]:
    with session_scope(ensure_schema(url)) as session:
        return list(session.exec(select(Account)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- connect -------------------------------------------------------------------------------------------------


def test_connect_stores_the_key_encrypted_and_names_the_account(
    cli: CliRunner, server: FakeStripe, db_url: str
) -> None:
    result = connect(cli, server.url)
    assert result.exit_code == 0, result.output
    assert "Acme Inc." in result.stdout and "acct_1Acme" in result.stdout
    [account] = stored(db_url)
    assert (account.name, account.stripe_account, account.display_name) == ("acme", "acct_1Acme", "Acme Inc.")
    assert account.api_base == server.url
    assert account.reporting_currency == "eur"  # the account's default currency
    assert account.key_mask == "sk_test_...9876"
    assert KEY not in account.key_encrypted
    assert decrypt(get_settings(), account.key_encrypted).reveal() == KEY
    assert stripe_config(get_settings(), account).api_key == KEY
    # ONE read-only call proves the key; the default currency made the invoice look-up unnecessary
    assert server.requests == [("GET", "/v1/account")]
    assert server.writes == []


def test_key_can_be_typed_at_a_hidden_prompt(cli: CliRunner, server: FakeStripe) -> None:
    result = connect(cli, server.url, key=None, prompt=KEY + "\n")
    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    assert len(stored(get_settings().database_url)) == 1


def test_there_is_no_key_option(cli: CliRunner, server: FakeStripe) -> None:
    """A key on the command line would land in shell history and `ps`."""
    result = cli.invoke(app, ["connect", "acme", "--api-base", server.url, "--api-key", KEY])
    assert result.exit_code == 2
    assert stored(get_settings().database_url) == []


def test_options_are_stored(cli: CliRunner, server: FakeStripe) -> None:
    result = connect(
        cli,
        server.url,
        "acme",
        "--reporting-currency",
        "GBP",
        "--slack-webhook",
        "--rps",
        "5",
        webhook=WEBHOOK,
    )
    assert result.exit_code == 0, result.output
    [account] = stored(get_settings().database_url)
    assert (account.reporting_currency, account.rps) == ("gbp", 5.0)
    assert account.slack_webhook_encrypted is not None and WEBHOOK not in account.slack_webhook_encrypted
    assert slack_webhook(get_settings(), account) == Secret(WEBHOOK)
    assert stripe_config(get_settings(), account).rps == 5.0
    assert WEBHOOK not in result.output


def test_the_webhook_can_be_typed_at_a_hidden_prompt(cli: CliRunner, server: FakeStripe) -> None:
    result = connect(cli, server.url, "acme", "--slack-webhook", prompt=WEBHOOK + "\n")
    assert result.exit_code == 0, result.output
    assert WEBHOOK not in result.output
    [account] = stored(get_settings().database_url)
    assert slack_webhook(get_settings(), account) == Secret(WEBHOOK)


def test_the_webhook_is_never_a_command_line_argument(cli: CliRunner, server: FakeStripe) -> None:
    """A URL on the command line would show in `ps` and shell history: no option takes one."""
    for args in (
        ["--slack-webhook-url", WEBHOOK],
        ["--slack-webhook", WEBHOOK],
        [f"--slack-webhook={WEBHOOK}"],
    ):
        result = connect(cli, server.url, "acme", *args)
        assert result.exit_code == 2, (args, result.output)
    assert stored(get_settings().database_url) == []


def test_without_a_terminal_a_webhook_must_come_from_the_environment(
    cli: CliRunner, server: FakeStripe
) -> None:
    result = connect(cli, server.url, "acme", "--slack-webhook")  # no SLACK_WEBHOOK_URL, nothing to read
    assert result.exit_code == 2
    assert "SLACK_WEBHOOK_URL" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert stored(get_settings().database_url) == [] and server.requests == []


def test_wrong_key_exits_2_with_one_line_and_stores_nothing(
    cli: CliRunner, server: FakeStripe, db_url: str
) -> None:
    result = connect(cli, server.url, key="sk_test_51HxSomebodyElsesKey0000")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "rejected the API key" in lines[0] and "STRIPE_API_KEY" in lines[0]
    assert "sk_test_51HxSomebodyElsesKey0000" not in result.output
    assert stored(db_url) == []


def test_restricted_key_falls_back_to_customers_and_invoice_currency(
    cli: CliRunner, world: StripeWorld, server: FakeStripe
) -> None:
    for n, currency in enumerate(["chf", "chf", "eur"]):
        line = builders.line(f"il_{n}", f"in_{n}", 500, (0, 10), currency=currency)
        world.add(builders.invoice(f"in_{n}", "cus_1", [line], created=n, currency=currency))
    result = connect(cli, server.url, key=RESTRICTED)
    assert result.exit_code == 0, result.output
    [account] = stored(get_settings().database_url)
    assert account.stripe_account == ""
    assert account.reporting_currency == "chf"  # the account's own currency is unreadable; invoices decide
    assert account.key_mask == "rk_test_...5432"
    paths = [p for _, p in server.requests]
    assert paths == ["/v1/account", "/v1/customers?limit=1", "/v1/invoices?limit=100"]
    assert "not readable" in result.stdout


def test_no_account_endpoint_falls_back_and_defaults_to_usd(cli: CliRunner, world: StripeWorld) -> None:
    with FakeStripe(world, api_keys=[KEY], has_account_endpoint=False) as fake:
        result = connect(cli, fake.url)
        paths = [p for _, p in fake.requests]
    assert result.exit_code == 0, result.output
    assert paths == ["/v1/account", "/v1/customers?limit=1", "/v1/invoices?limit=100"]
    [account] = stored(get_settings().database_url)
    assert account.reporting_currency == "usd"  # no account currency, no invoices: the documented fallback


def test_unreachable_api_exits_2_and_stores_nothing(cli: CliRunner) -> None:
    port = free_port()
    result = connect(cli, f"http://127.0.0.1:{port}")
    assert result.exit_code == 2
    assert "cannot reach the Stripe API" in result.stderr and f"127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert stored(get_settings().database_url) == []


def test_duplicate_name_exits_2_before_calling_stripe(
    cli: CliRunner, server: FakeStripe, db_url: str
) -> None:
    assert connect(cli, server.url).exit_code == 0
    calls = len(server.requests)
    result = connect(cli, server.url, "acme", "--reporting-currency", "jpy")
    assert result.exit_code == 2
    assert "already connected" in result.stderr and "retention disconnect acme" in result.stderr
    assert len(server.requests) == calls
    [account] = stored(db_url)
    assert account.reporting_currency == "eur"  # the first connection is untouched


@pytest.mark.parametrize(
    "args, words",
    [
        (["--reporting-currency", "usdx"], "ISO 4217"),
        (["--reporting-currency", "xyz"], "ISO 4217"),
        (["--rps", "-1"], "--rps"),
        (["--api-base", "ftp://example.com"], "--api-base"),
        (["--slack-webhook"], "Slack webhook"),
    ],
)
def test_bad_input_exits_2_without_calling_stripe(
    cli: CliRunner, server: FakeStripe, args: list[str], words: str
) -> None:
    result = connect(cli, server.url, "acme", *args, webhook="not a url")
    assert result.exit_code == 2, result.output
    assert words in result.stderr
    assert server.requests == []
    assert stored(get_settings().database_url) == []


@pytest.mark.parametrize(
    "name, key, words",
    [
        ("acme", "pk_test_51HxPublishableKey1234", "publishable"),
        ("acme", "   ", "no Stripe API key"),
        ("bad name!", KEY, "not a usable account name"),
    ],
)
def test_bad_names_and_keys_are_refused(
    cli: CliRunner, server: FakeStripe, name: str, key: str, words: str
) -> None:
    result = connect(cli, server.url, name, key=key)
    assert result.exit_code == 2
    assert words in result.stderr
    assert stored(get_settings().database_url) == []


# -- secrets never leak --------------------------------------------------------------------------------------


def test_plaintext_secrets_are_nowhere_in_file_logs_or_output(
    cli: CliRunner, server: FakeStripe, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_LOG", "debug")  # stripe-python would print requests to stderr too
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="stripe")
    outputs = [connect(cli, server.url, "acme", "--slack-webhook", webhook=WEBHOOK)]
    outputs.append(connect(cli, server.url, "acme"))  # a refused duplicate
    outputs.append(connect(cli, server.url, "other", key=KEY[:-1] + "X"))  # rejected, close to the real one
    outputs.append(cli.invoke(app, ["accounts"]))
    outputs.append(cli.invoke(app, ["accounts", "--json"]))
    assert [r.exit_code for r in outputs] == [0, 2, 2, 0, 0]
    assert any(r.name.startswith("stripe") for r in caplog.records), "stripe's logger was not captured"

    logged = "\n".join(r.getMessage() for r in caplog.records)
    shown = "\n".join(r.output for r in outputs)
    home = Path(get_settings().home)
    files = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("retention.db"))
    assert files, "the SQLite database file was not found"
    for secret in (KEY, KEY[:-1] + "X", WEBHOOK, "AcmeWebhookSecretPath"):
        assert secret not in logged
        assert secret not in shown
        assert secret.encode() not in files
    # the encrypted copy is there, so the search above looked at the right file
    [account] = stored(get_settings().database_url)
    assert account.key_encrypted.encode() in files


def test_plaintext_secrets_are_not_in_postgres_rows(pg_engine: Engine) -> None:
    with FakeStripe(StripeWorld(), api_keys=[KEY]) as fake:
        connect_account(pg_engine, get_settings(), "acme", Secret(KEY), fake.url, None, Secret(WEBHOOK), None)
    with pg_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT a::text FROM account a")).scalars().all()
    assert len(rows) == 1
    assert KEY not in rows[0] and WEBHOOK not in rows[0] and "AcmeWebhookSecretPath" not in rows[0]
    assert "sk_test_...9876" in rows[0]


def test_account_repr_and_errors_hide_secrets(server: FakeStripe, sqlite_engine: Engine) -> None:
    account = connect_account(
        sqlite_engine, get_settings(), "acme", Secret(KEY), server.url, None, Secret(WEBHOOK), None
    )
    assert KEY not in repr(account) and account.key_encrypted not in repr(account)
    assert KEY not in repr(stripe_config(get_settings(), account))
    with pytest.raises(ConnectError) as caught:
        connect_account(sqlite_engine, get_settings(), "acme", Secret(KEY), server.url, None, None, None)
    assert KEY not in repr(caught.value)


# -- accounts ------------------------------------------------------------------------------------------------


def test_accounts_json_masks_the_key(cli: CliRunner, server: FakeStripe, db_url: str) -> None:
    assert connect(cli, server.url, "acme").exit_code == 0
    assert connect(cli, server.url, "beta", key=RESTRICTED).exit_code == 0
    result = cli.invoke(app, ["accounts", "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload == {
        "accounts": [
            {
                "name": "acme",
                "stripe_account": "acct_1Acme",
                "api_base": server.url,
                "reporting_currency": "eur",
                "key": "sk_test_...9876",
            },
            {
                "name": "beta",
                "stripe_account": "",
                "api_base": server.url,
                "reporting_currency": "usd",
                "key": "rk_test_...5432",
            },
        ]
    }
    assert KEY not in result.stdout and RESTRICTED not in result.stdout


def test_accounts_table_and_empty_list(cli: CliRunner, world: StripeWorld, server: FakeStripe) -> None:
    world.account["settings"]["dashboard"]["display_name"] = "Acme [bold]beta[/bold]"
    empty = cli.invoke(app, ["accounts"])
    assert empty.exit_code == 0 and "retention connect" in empty.stdout
    assert json.loads(cli.invoke(app, ["accounts", "--json"]).stdout) == {"accounts": []}
    assert connect(cli, server.url).exit_code == 0
    table = cli.invoke(app, ["accounts"], terminal_width=200)
    assert table.exit_code == 0
    assert "acme" in table.stdout and "sk_test_...9876" in table.stdout and KEY not in table.stdout
    assert "Acme [bold]beta[/bold]" in table.stdout  # shown as Stripe has it, not read as markup


# -- disconnect ----------------------------------------------------------------------------------------------


def _value(column: sa.Column[Any], n: int) -> Any:
    """A valid value of the column's type (every table gets a row without knowing its module)."""
    kind = column.type
    if isinstance(kind, sa.types.TypeDecorator):  # e.g. SQLModel's AutoString
        kind = kind.impl_instance
    # tried in order: the first type the column's is an instance of makes the value (Enum before String)
    makers: list[tuple[Any, Callable[[Any], Any]]] = [
        (sa.Boolean, lambda _: False),
        (sa.Integer, lambda _: n),
        (sa.Float | sa.Numeric, lambda _: 1.5),
        (sa.DateTime, lambda _: datetime(2026, 1, 1, tzinfo=UTC)),
        (sa.Date, lambda _: date(2026, 1, 1)),
        (sa.JSON, lambda _: {}),
        (sa.Enum, lambda enum: enum.enums[0]),
        (sa.String, lambda string: f"x{n}"[: string.length or 50]),
    ]
    for types, make in makers:
        if isinstance(kind, types):
            return make(kind)
    raise AssertionError(f"teach _value about {kind!r} ({column.table.name}.{column.name})")


def _fill_every_table(engine: Engine, account_id: int) -> list[sa.Table]:
    """One row in every table that holds account data; returns those tables."""
    tables = [t for t in SQLModel.metadata.sorted_tables if "account_id" in t.c and t.name != "account"]
    with engine.begin() as conn:
        for table in tables:
            row: dict[str, Any] = {}
            for n, column in enumerate(table.c, start=1):
                if column.name == "account_id":
                    row["account_id"] = account_id
                elif column.primary_key and column is table.autoincrement_column:
                    continue
                elif not column.nullable or column.primary_key:
                    row[column.name] = _value(column, n)
            conn.execute(table.insert().values(**row))
    return tables


def _counts(engine: Engine, tables: list[sa.Table], account_id: int) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.account_id == account_id)
            ).scalar_one()
            for t in tables
        }


def _add_account(engine: Engine, name: str) -> int:
    with session_scope(engine) as session:
        account = Account(name=name, key_encrypted="token", key_mask="sk_test_...0000")
        session.add(account)
        session.flush()
        assert account.id is not None
        return account.id


def test_disconnect_deletes_the_account_and_all_its_data(engine: Engine) -> None:
    gone, kept = _add_account(engine, "gone"), _add_account(engine, "kept")
    tables = _fill_every_table(engine, gone)
    _fill_every_table(engine, kept)
    assert len(tables) >= 10  # the Stripe tables, ledger, snapshots, runs... (more as modules are added)
    assert set(_counts(engine, tables, gone).values()) == {1}

    disconnect_account(engine, "gone")

    assert set(_counts(engine, tables, gone).values()) == {0}
    assert set(_counts(engine, tables, kept).values()) == {1}
    with session_scope(engine) as session:
        assert [a.name for a in session.exec(select(Account))] == ["kept"]


def test_foreign_keys_cascade_on_both_databases(engine: Engine) -> None:
    """Deleting only the account row removes its data: every account_id column cascades (SQLite included)."""
    gone = _add_account(engine, "gone")
    tables = _fill_every_table(engine, gone)
    with engine.begin() as conn:
        accounts = table_of(Account)
        conn.execute(sa.delete(accounts).where(accounts.c.id == gone))
    assert _counts(engine, tables, gone) == {t.name: 0 for t in tables}


def test_disconnect_without_a_terminal_refuses_unless_yes(
    cli: CliRunner, server: FakeStripe, db_url: str
) -> None:
    assert connect(cli, server.url).exit_code == 0
    refused = cli.invoke(app, ["disconnect", "acme"])  # CliRunner's stdin is not a terminal
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert [a.name for a in stored(db_url)] == ["acme"]  # nothing deleted
    result = cli.invoke(app, ["disconnect", "acme", "--yes"])
    assert result.exit_code == 0 and "acme" in result.stdout
    assert stored(db_url) == []
    again = cli.invoke(app, ["disconnect", "acme", "--yes"])
    assert again.exit_code == 2 and "no account named 'acme'" in again.stderr


def test_disconnect_asks_on_a_terminal(
    cli: CliRunner, server: FakeStripe, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.cli.accounts.on_terminal", lambda: True)
    assert connect(cli, server.url).exit_code == 0
    for answer in ("n\n", "\n", ""):  # no, the default (no), end of input
        kept = cli.invoke(app, ["disconnect", "acme"], input=answer)
        assert kept.exit_code == 2 and "nothing deleted" in kept.stderr, answer
        assert "ALL its stored data" in kept.stdout
        assert [a.name for a in stored(db_url)] == ["acme"]
    gone = cli.invoke(app, ["disconnect", "acme"], input="y\n")
    assert gone.exit_code == 0 and "Disconnected acme" in gone.stdout
    assert stored(db_url) == []


# -- slack webhook resolution, db upgrade --------------------------------------------------------------------


def test_slack_webhook_is_the_accounts_own_else_the_default(
    server: FakeStripe, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = get_settings()
    own = connect_account(
        sqlite_engine, settings, "own", Secret(KEY), server.url, None, Secret(WEBHOOK), None
    )
    plain = connect_account(sqlite_engine, settings, "plain", Secret(KEY), server.url, None, None, None)
    assert slack_webhook(settings, own) == Secret(WEBHOOK)
    assert slack_webhook(settings, plain) is None
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T1/B1/Default")
    settings = get_settings()
    assert slack_webhook(settings, plain) == Secret("https://hooks.slack.com/services/T1/B1/Default")
    assert slack_webhook(settings, own) == Secret(WEBHOOK)


def test_db_upgrade_creates_the_schema(cli: CliRunner, db_url: str) -> None:
    result = cli.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "newest schema" in result.stdout
    assert set(sa.inspect(ensure_schema(db_url)).get_table_names()) >= {"account", "alembic_version"}


def test_db_upgrade_refuses_an_unusable_url(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_DATABASE_URL", "postgresql://nobody:hunter2@127.0.0.1:1/none")
    result = cli.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "RETENTION_DATABASE_URL" in result.stderr and "hunter2" not in result.output


def test_bad_configuration_is_refused_in_one_line(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_STRIPE_RPS", "-5")
    result = cli.invoke(app, ["accounts"])
    assert result.exit_code == 2
    assert "RETENTION_STRIPE_RPS" in result.stderr and len(result.stderr.strip().splitlines()) == 1
