"""`retention update`: settings changed in place with the data kept, a rotated key that must open the same
account, and the way back after a lost key file. Against a local Stripe; storage on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from integrations.stripe.models import StripeCustomer
from worker.accounts import slack_webhook, stripe_config
from worker.cli.main import app
from worker.db import ensure_schema, session_scope
from worker.demo import builders
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.models import Account
from worker.secrets import KEY_FILE, Secret
from worker.settings import get_settings

KEY = "sk_test_51HxAcmeSecretPlaintext9876"
NEW_KEY = "sk_test_51HxAcmeRotatedPlaintext1111"
RESTRICTED = "rk_test_51HxAcmeRestrictedPlain5432"
OTHER_KEY = "sk_test_51HxOtherCompanyPlaintext2222"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/AcmeWebhookSecretPath"
WEBHOOK_2 = "https://hooks.slack.com/services/T000/B000/SecondWebhookPath"


@pytest.fixture
def server() -> Iterator[FakeStripe]:
    world = StripeWorld(builders.account("acct_1Acme", "Acme Inc.", default_currency="eur"))
    world.add(builders.customer("cus_1", "One"))
    with FakeStripe(world, api_keys=[KEY, NEW_KEY], restricted_keys=[RESTRICTED]) as fake:
        yield fake


@pytest.fixture
def other() -> Iterator[FakeStripe]:
    with FakeStripe(StripeWorld(builders.account("acct_2Other", "Other")), api_keys=[OTHER_KEY]) as fake:
        yield fake


def run(cli: CliRunner, *args: str, key: str | None = None, webhook: str | None = None, **kw: Any) -> Any:
    env = {}
    if key is not None:
        env["STRIPE_API_KEY"] = key
    if webhook is not None:
        env["SLACK_WEBHOOK_URL"] = webhook
    return cli.invoke(app, list(args), env=env, **kw)


def retention(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    """`retention ARGS` through its entry point (worker.cli.main.main), in the test's environment."""
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_API_KEY"}
    if key is not None:
        env["STRIPE_API_KEY"] = key
    code = "from worker.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def account(url: str, name: str = "acme") -> Account:
    with session_scope(ensure_schema(url)) as session:
        found = session.exec(select(Account).where(Account.name == name)).one()
        session.expunge(found)
        return found


def add_customer(url: str, acct: Account, customer_id: str = "cus_1") -> None:
    with session_scope(ensure_schema(url)) as session:
        session.add(StripeCustomer(account_id=acct.id or 0, id=customer_id, name="One", created=1))


def test_settings_change_in_place_and_the_data_stays(cli: CliRunner, server: FakeStripe, db_url: str) -> None:
    assert run(cli, "connect", "acme", "--api-base", server.url, key=KEY).exit_code == 0
    before = account(db_url)
    add_customer(db_url, before)
    result = run(
        cli, "update", "acme", "--reporting-currency", "GBP", "--rps", "7", "--slack-webhook", webhook=WEBHOOK
    )
    assert result.exit_code == 0, result.output
    assert (
        "reporting currency GBP" in result.stdout
        and "rps 7" in result.stdout
        and "data is kept" in result.stdout
    )
    assert WEBHOOK not in result.output
    after = account(db_url)
    assert (after.id, after.reporting_currency, after.rps) == (before.id, "gbp", 7.0)
    assert slack_webhook(get_settings(), after) == Secret(WEBHOOK)
    assert after.key_encrypted == before.key_encrypted  # the key is untouched
    with session_scope(ensure_schema(db_url)) as session:
        assert [c.id for c in session.exec(select(StripeCustomer))] == ["cus_1"]
    dropped = run(cli, "update", "acme", "--no-slack-webhook")
    assert dropped.exit_code == 0, dropped.output
    assert account(db_url).slack_webhook_encrypted is None


def test_the_webhook_comes_from_a_hidden_prompt_never_an_argument(
    cli: CliRunner, server: FakeStripe, db_url: str
) -> None:
    assert run(cli, "connect", "acme", "--api-base", server.url, key=KEY).exit_code == 0
    typed = run(cli, "update", "acme", "--slack-webhook", input=WEBHOOK_2 + "\n")
    assert typed.exit_code == 0, typed.output
    assert WEBHOOK_2 not in typed.output
    assert slack_webhook(get_settings(), account(db_url)) == Secret(WEBHOOK_2)
    assert run(cli, "update", "acme", "--slack-webhook", WEBHOOK).exit_code == 2  # no such argument
    assert run(cli, "update", "acme", "--slack-webhook").exit_code == 2  # no terminal, nothing in the env


@pytest.mark.parametrize(
    "args, words",
    [
        ([], "nothing to change"),
        (["--reporting-currency", "xyz"], "ISO 4217"),
        (["--rps", "-1"], "--rps"),
        (["--api-base", "ftp://example.com"], "--api-base"),
    ],
)
def test_bad_updates_are_refused_and_change_nothing(
    cli: CliRunner, server: FakeStripe, args: list[str], words: str
) -> None:
    assert run(cli, "connect", "acme", "--api-base", server.url, key=KEY).exit_code == 0
    before = account(get_settings().database_url)
    result = run(cli, "update", "acme", *args)
    assert result.exit_code == 2 and words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert account(get_settings().database_url) == before
    unknown = run(cli, "update", "nobody", "--rps", "3")
    assert unknown.exit_code == 2 and "no account named 'nobody'" in unknown.stderr


def test_rotate_key_must_open_the_same_account(
    cli: CliRunner, server: FakeStripe, other: FakeStripe, db_url: str
) -> None:
    assert run(cli, "connect", "acme", "--api-base", server.url, key=KEY).exit_code == 0
    rotated = run(cli, "update", "acme", "--rotate-key", key=NEW_KEY)
    assert rotated.exit_code == 0, rotated.output
    assert "sk_test_...1111" in rotated.stdout and NEW_KEY not in rotated.output
    assert stripe_config(get_settings(), account(db_url)).api_key == NEW_KEY
    # another company's key, at another server: refused, the stored key stays
    foreign = run(cli, "update", "acme", "--rotate-key", "--api-base", other.url, key=OTHER_KEY)
    assert foreign.exit_code == 2 and "another Stripe account" in foreign.stderr
    assert OTHER_KEY not in foreign.output
    assert stripe_config(get_settings(), account(db_url)).api_key == NEW_KEY
    rejected = run(cli, "update", "acme", "--rotate-key", key="sk_test_51HxNobodyHasThisKey0000")
    assert rejected.exit_code == 2 and "rejected the API key" in rejected.stderr


def test_restricted_keys_are_matched_by_a_stored_customer(
    cli: CliRunner, server: FakeStripe, other: FakeStripe, db_url: str
) -> None:
    assert run(cli, "connect", "acme", "--api-base", server.url, key=RESTRICTED).exit_code == 0
    add_customer(db_url, account(db_url))
    same = run(cli, "update", "acme", "--rotate-key", key=KEY)  # may read the account: fills in its id
    assert same.exit_code == 0, same.output
    assert account(db_url).stripe_account == "acct_1Acme"
    with session_scope(ensure_schema(db_url)) as session:
        row = session.exec(select(Account)).one()
        row.stripe_account = ""  # as connected with a restricted key
        session.add(row)
    foreign = run(cli, "update", "acme", "--rotate-key", "--api-base", other.url, key=OTHER_KEY)
    assert foreign.exit_code == 2 and "another Stripe account" in foreign.stderr
    assert ("GET", "/v1/customers/cus_1") in other.requests  # the stored customer is not there


def test_a_new_reporting_currency_restates_the_stored_history(cli: CliRunner) -> None:
    world = StripeWorld(builders.account("acct_1Acme", "Acme Inc.", default_currency="usd"))
    world.add(builders.customer("cus_1", "One"))
    line = builders.line("il_1", "in_1", 5000, (1_700_000_000, 1_702_592_000), currency="usd")
    world.add(builders.invoice("in_1", "cus_1", [line], created=1_700_000_000, currency="usd"))
    with FakeStripe(world, api_keys=[KEY]) as fake:
        assert run(cli, "connect", "acme", "--api-base", fake.url, key=KEY).exit_code == 0
        assert run(cli, "sync", "acme").exit_code == 0
    assert run(cli, "rebuild", "acme").exit_code == 0
    changed = run(cli, "update", "acme", "--reporting-currency", "usd")
    assert changed.exit_code == 0 and "nothing changed" in changed.stdout
    eur = run(cli, "update", "acme", "--reporting-currency", "eur")
    assert eur.exit_code == 0, eur.output
    assert "reporting currency EUR" in eur.stdout
    assert "line" in eur.stdout.splitlines()[-1]  # the rebuild's summary line follows


# -- the lost key file ------------------------------------------------------------------------------------


def test_a_lost_key_file_is_never_silently_replaced(
    cli: CliRunner, server: FakeStripe, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RETENTION_SECRET_KEY")
    assert (
        run(
            cli, "connect", "acme", "--api-base", server.url, "--slack-webhook", key=KEY, webhook=WEBHOOK
        ).exit_code
        == 0
    )
    key_file = Path(get_settings().home) / KEY_FILE
    assert key_file.exists()
    key_file.unlink()
    for args, key in ((["sync", "acme"], None), (["connect", "beta", "--api-base", server.url], KEY)):
        result = retention(*args, key=key)  # the installed entry point: exit status and stderr as users see
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert str(key_file) in line and "restore it" in line and "--rotate-key" in line
        assert not key_file.exists()  # no second key behind the user's back
    assert run(cli, "update", "acme", "--rps", "3", "--slack-webhook", webhook=WEBHOOK_2).exit_code == 2
    assert not key_file.exists()
    # the way back without the old key: re-enter the key; the webhook was under the lost key too
    needs_webhook = run(cli, "update", "acme", "--rotate-key", key=KEY)
    assert needs_webhook.exit_code == 2 and "--no-slack-webhook" in needs_webhook.stderr
    assert not key_file.exists()
    rotated = run(cli, "update", "acme", "--rotate-key", "--slack-webhook", key=KEY, webhook=WEBHOOK_2)
    assert rotated.exit_code == 0, rotated.output
    assert key_file.exists() and (key_file.stat().st_mode & 0o777) == 0o600
    acme = account(db_url)
    assert stripe_config(get_settings(), acme).api_key == KEY
    assert slack_webhook(get_settings(), acme) == Secret(WEBHOOK_2)
    assert run(cli, "sync", "acme").exit_code == 0
