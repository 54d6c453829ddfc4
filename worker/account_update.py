"""`retention update`: change a connected account's settings in place, keeping every stored object.

Before this, the only way to change a webhook, a request budget or the reporting currency was to disconnect
(deleting all data) and connect again. Every check runs before anything is written, as in `connect`; a
refusal is a `ConnectError` whose message is one line. A new key (`--rotate-key`) or a new API base is proven
with one read and must open the same Stripe account: a key of another account would mix two companies' data
under one name.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import select

from integrations.stripe.account import AccountCheckError, AccountInfo, fetch_account_info, knows_customer
from integrations.stripe.client import StripeConfig
from integrations.stripe.repository.billing import has_lines
from integrations.stripe.repository.customers import any_customer_id
from worker.accounts import (
    ConnectError,
    check_api_base,
    check_currency,
    check_key,
    check_webhook,
    count_accounts,
)
from worker.db import session_scope
from worker.models import Account
from worker.secrets import Secret, SecretError, decrypt, encrypt, ensure_key, key_is_missing, mask
from worker.settings import Settings


@dataclass(frozen=True)
class AccountChanges:
    """What `update` was asked to change; None (or False) leaves a setting as it is."""

    reporting_currency: str | None = None
    slack_webhook: Secret | None = None  # the account's own webhook from now on
    drop_slack_webhook: bool = False  # back to SLACK_WEBHOOK_URL
    rps: float | None = None
    api_base: str | None = None
    api_key: Secret | None = None  # --rotate-key

    def empty(self) -> bool:
        return self == AccountChanges()


@dataclass(frozen=True)
class UpdateOutcome:
    """The account as stored now and one phrase per setting that changed (for the command's summary)."""

    account: Account
    changed: list[str]
    currency_changed: bool


def update_account(engine: Engine, settings: Settings, name: str, changes: AccountChanges) -> UpdateOutcome:
    """Check the changes, prove a new key or API base, then write them in one transaction."""
    if changes.empty():
        raise ConnectError(
            "nothing to change: give --reporting-currency, --slack-webhook, --no-slack-webhook, --rps,"
            " --api-base or --rotate-key"
        )
    if changes.slack_webhook is not None and changes.drop_slack_webhook:
        raise ConnectError("--slack-webhook and --no-slack-webhook contradict each other: give one")
    currency = check_currency(changes.reporting_currency) if changes.reporting_currency else None
    api_base = check_api_base(changes.api_base) if changes.api_base is not None else None
    if changes.api_key is not None:
        check_key(changes.api_key)
    if changes.slack_webhook is not None:
        check_webhook(changes.slack_webhook)
    if changes.rps is not None and changes.rps < 0:
        raise ConnectError(f"--rps {changes.rps:g} is negative: give requests per second, or 0 for no limit")
    account = _load(engine, name)
    _check_own_webhook(settings, account, changes)
    info = _prove(engine, settings, account, changes, api_base)
    if changes.api_key is not None or changes.slack_webhook is not None:
        # a new key file only for a new Stripe key after the old key was lost (worker/secrets.py)
        ensure_key(settings, count_accounts(engine), replace_lost=changes.api_key is not None)
    with session_scope(engine) as session:
        row = session.get(Account, account.id)
        if row is None:  # disconnected meanwhile
            raise ConnectError(f"no account named {name!r}: see `retention accounts`")
        changed = _apply(settings, row, changes, currency, api_base, info)
        session.add(row)
        session.flush()
        session.refresh(row)
        session.expunge(row)
    return UpdateOutcome(row, changed, row.reporting_currency != account.reporting_currency)


def restate(engine: Engine, account: Account) -> str | None:
    """After a new reporting currency: rebuild the stored history in it (no Stripe calls), so no figure
    shows the old currency's amounts under the new code; the rebuild's one-line summary, None with nothing
    stored yet."""
    from worker.rebuild import describe, rebuild_account  # only this path needs the rebuild

    with engine.connect() as conn:
        if not has_lines(conn, account.id or 0):
            return None
    return describe(rebuild_account(engine, account))


def _load(engine: Engine, name: str) -> Account:
    with session_scope(engine) as session:
        account = session.exec(select(Account).where(Account.name == name)).first()
        if account is None:
            raise ConnectError(f"no account named {name!r}: see `retention accounts`")
        session.expunge(account)
        return account


def _check_own_webhook(settings: Settings, account: Account, changes: AccountChanges) -> None:
    """Rotating a key after the old key was lost: the account's own webhook was encrypted with the lost key
    too, so it must be given again or dropped rather than left undecryptable."""
    keeps_webhook = changes.slack_webhook is None and not changes.drop_slack_webhook
    if changes.api_key is None or not account.slack_webhook_encrypted or not keeps_webhook:
        return
    if key_is_missing(settings) or not _opens(settings, account.slack_webhook_encrypted):
        raise ConnectError(
            f"account {account.name!r}'s own Slack webhook cannot be decrypted with the current key either:"
            " add --slack-webhook to enter it again or --no-slack-webhook to use SLACK_WEBHOOK_URL"
        )


def _opens(settings: Settings, token: str) -> bool:
    try:
        decrypt(settings, token)
    except SecretError:
        return False
    return True


def _prove(
    engine: Engine, settings: Settings, account: Account, changes: AccountChanges, api_base: str | None
) -> AccountInfo | None:
    """With a new key or API base: one read proves the key there, and it must be the same Stripe account."""
    if changes.api_key is None and api_base is None:
        return None
    key = changes.api_key or decrypt(settings, account.key_encrypted)
    base = api_base or account.api_base
    config = StripeConfig(api_key=key.reveal(), api_base=base, account_label=account.name, timeout=20.0)
    try:
        info = fetch_account_info(config)
        same = _same_account(engine, account, info, config)
    except AccountCheckError as exc:
        raise ConnectError(str(exc)) from None
    if not same:
        what = "the new key" if changes.api_key is not None else f"the key at {base}"
        raise ConnectError(
            f"{what} opens another Stripe account ({info.label}) than {account.name!r}"
            f" ({account.stripe_account or 'connected before'}): give a key of the same account, or connect"
            " the other one under a new name"
        )
    return info


def _same_account(engine: Engine, account: Account, info: AccountInfo, config: StripeConfig) -> bool:
    """Both account ids known: they must match. Otherwise (restricted keys read no account) a stored
    customer must exist for the new key; with nothing stored there is nothing to mix up."""
    if account.stripe_account and info.id:
        return account.stripe_account == info.id
    with engine.connect() as conn:
        customer = any_customer_id(conn, account.id or 0)
    return customer is None or knows_customer(config, customer)


def _apply(
    settings: Settings,
    row: Account,
    changes: AccountChanges,
    currency: str | None,
    api_base: str | None,
    info: AccountInfo | None,
) -> list[str]:
    """Write the changes on the row; what changed, in words."""
    changed: list[str] = []
    if currency is not None and currency != row.reporting_currency:
        row.reporting_currency = currency
        changed.append(f"reporting currency {currency.upper()}")
    if changes.slack_webhook is not None:
        row.slack_webhook_encrypted = encrypt(settings, changes.slack_webhook)
        changed.append("own Slack webhook set")
    if changes.drop_slack_webhook and row.slack_webhook_encrypted is not None:
        row.slack_webhook_encrypted = None
        changed.append("own Slack webhook removed (SLACK_WEBHOOK_URL serves)")
    if changes.rps is not None and changes.rps != row.rps:
        row.rps = changes.rps
        changed.append(f"rps {changes.rps:g}")
    if api_base is not None and api_base != row.api_base:
        row.api_base = api_base
        changed.append(f"API base {api_base}")
    if changes.api_key is not None:
        row.key_encrypted = encrypt(settings, changes.api_key)
        row.key_mask = mask(changes.api_key.reveal())
        changed.append(f"key rotated ({row.key_mask})")
    if info is not None:  # a key that may read the account fills in what a restricted one could not
        row.stripe_account = row.stripe_account or info.id
        row.display_name = info.display_name or row.display_name
    return changed
