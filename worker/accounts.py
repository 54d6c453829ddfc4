"""Connected accounts: connecting (prove the key, store it encrypted), disconnecting, and the decrypted view.

Connecting refuses rather than half-succeeds: every check (name, currency, URL, key) runs before anything is
written, and a refusal is a `ConnectError` whose message is one line saying what happened and what to do. The
plaintext key exists only in memory, inside `Secret`; the database holds the Fernet token and a mask.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import column, delete, inspect, table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from integrations.stripe.config import DEFAULT_API_BASE, StripeConfig
from metrics.currencies import ISO_CURRENCIES
from worker.db import ensure_schema, session_scope
from worker.models import Account
from worker.secrets import Secret, decrypt, encrypt, ensure_key, mask
from worker.settings import Settings, get_settings

FALLBACK_CURRENCY = "usd"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class ConnectError(ValueError):
    """Connecting was refused; the message is the one line to show (never containing a secret)."""


def stripe_config(settings: Settings, account: Account, redis_url: str | None = None) -> StripeConfig:
    """The account's Stripe configuration; the per-account --rps wins over RETENTION_STRIPE_RPS."""
    return StripeConfig(
        api_key=decrypt(settings, account.key_encrypted).reveal(),
        api_base=account.api_base,
        rps=account.rps if account.rps is not None else settings.retention_stripe_rps,
        redis_url=redis_url,
        account_label=account.name,
    )


def slack_webhook(settings: Settings, account: Account) -> Secret | None:
    """The account's own Slack webhook, else the SLACK_WEBHOOK_URL default, else None (nothing is sent)."""
    if account.slack_webhook_encrypted:
        return decrypt(settings, account.slack_webhook_encrypted)
    if settings.slack_webhook_url is not None and settings.slack_webhook_url.get_secret_value():
        return Secret(settings.slack_webhook_url.get_secret_value())
    return None


def connect_account(
    engine: Engine,
    settings: Settings,
    name: str,
    api_key: Secret,
    api_base: str,
    reporting_currency: str | None,
    slack_webhook_url: Secret | None,
    rps: float | None,
) -> Account:
    """Check everything, prove the key with one read, then store the account with its secrets encrypted."""
    # the Stripe SDK is imported only here: listing or reading accounts never needs it (start-up time)
    from integrations.stripe.account import AccountCheckError, fetch_account_info, most_used_invoice_currency

    api_base = check_api_base(api_base)
    currency = check_currency(reporting_currency) if reporting_currency is not None else None
    check_name(name)
    check_key(api_key)
    if slack_webhook_url is not None:
        check_webhook(slack_webhook_url)
    if rps is not None and rps < 0:
        raise ConnectError(f"--rps {rps} is negative: give requests per second, or 0 for no limit")
    _refuse_duplicate(engine, name)
    ensure_key(settings, count_accounts(engine))  # before Stripe: a lost key file refuses up front

    config = StripeConfig(api_key=api_key.reveal(), api_base=api_base, account_label=name, timeout=20.0)
    try:
        info = fetch_account_info(config)
    except AccountCheckError as exc:
        raise ConnectError(str(exc)) from None
    currency = currency or info.default_currency or most_used_invoice_currency(config) or FALLBACK_CURRENCY

    account = Account(
        name=name,
        stripe_account=info.id,
        display_name=info.display_name,
        api_base=api_base,
        reporting_currency=currency,
        livemode=info.livemode,
        key_encrypted=encrypt(settings, api_key),
        key_mask=mask(api_key.reveal()),
        slack_webhook_encrypted=None if slack_webhook_url is None else encrypt(settings, slack_webhook_url),
        rps=rps,
    )
    try:
        with session_scope(engine) as session:
            session.add(account)
    except IntegrityError:  # another `connect` with the same name won the race since our check
        raise _duplicate(name) from None
    return account


def count_accounts(engine: Engine) -> int:
    """How many accounts are connected: each holds at least its Stripe key, encrypted."""
    with session_scope(engine) as session:
        return len(session.exec(select(Account.id)).all())


def disconnect_account(engine: Engine, name: str) -> None:
    """Delete the account and every row of every table that holds its data, in one transaction.

    The foreign keys cascade (SQLite too: worker/db.py turns them on), but the explicit deletes do not depend
    on every future table remembering `ondelete="CASCADE"`. The tables are found in the database itself, not
    in the imported models, so a table whose module this process never imported is not missed.
    """
    holding = _tables_with_account_id(engine)
    with session_scope(engine) as session:
        account = session.exec(select(Account).where(Account.name == name)).first()
        if account is None:
            raise ConnectError(f"no account named {name!r}: see `retention accounts`")
        for name_ in holding:
            data = table(name_, column("account_id"))
            session.execute(delete(data).where(data.c.account_id == account.id))
        session.delete(account)


def _tables_with_account_id(engine: Engine) -> list[str]:
    """Every table with an account_id column, children before parents (reverse foreign-key order)."""
    inspector = inspect(engine)
    ordered = [t for t, _ in inspector.get_sorted_table_and_fkc_names() if t is not None]
    return [
        t
        for t in reversed(ordered)
        if t != Account.__tablename__ and any(c["name"] == "account_id" for c in inspector.get_columns(t))
    ]


def find_account(engine: Engine, name: str) -> bool:
    """Whether an account of this name is connected."""
    with session_scope(engine) as session:
        return session.exec(select(Account.id).where(Account.name == name)).first() is not None


def list_accounts(engine: Engine) -> list[Account]:
    """Every connected account by name, loaded to work on (`retention accounts` lists them through
    worker/account_views.py, without SQLAlchemy)."""
    with session_scope(engine) as session:
        return find_accounts(session, None)


def find_accounts(session: Session, name: str | None) -> list[Account]:
    """Every account by name when `name` is None, else the one so named (none when there is no such account).

    Takes the caller's session so the rows stay attached to it: commands go on to read through them.
    """
    if name is None:
        return list(session.exec(select(Account).order_by(Account.name)))  # type: ignore[arg-type]
    account = session.exec(select(Account).where(Account.name == name)).first()
    return [] if account is None else [account]


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ConnectError(
            f"{name!r} is not a usable account name: use letters, digits, '-', '_' or '.' (at most 100)"
        )


def check_currency(value: str) -> str:
    code = value.strip().lower()
    if code not in ISO_CURRENCIES:
        raise ConnectError(f"--reporting-currency {value!r} is not an ISO 4217 currency code: use e.g. usd")
    return code


def check_api_base(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConnectError(f"--api-base {value!r} is not an http(s) URL: use e.g. {DEFAULT_API_BASE}")
    return value.strip().rstrip("/")


def check_key(api_key: Secret) -> None:
    key = api_key.reveal().strip()
    if not key:
        raise ConnectError("no Stripe API key given: set STRIPE_API_KEY or type it at the prompt")
    if key.startswith("pk_"):
        raise ConnectError(
            "that is a publishable key (pk_...), which cannot read billing data: use a secret "
            "(sk_...) or restricted (rk_...) key"
        )
    if any(ch.isspace() for ch in key):
        raise ConnectError("the Stripe API key contains spaces: paste the key alone")


def check_webhook(url: Secret) -> None:
    parts = urlsplit(url.reveal().strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConnectError(
            "the Slack webhook (SLACK_WEBHOOK_URL or the prompt) is not an http(s) URL: paste Slack's"
            " incoming webhook URL"
        )


def _refuse_duplicate(engine: Engine, name: str) -> None:
    with session_scope(engine) as session:
        if session.exec(select(Account).where(Account.name == name)).first() is not None:
            raise _duplicate(name)


def _duplicate(name: str) -> ConnectError:
    return ConnectError(
        f"an account named {name!r} is already connected: change its settings with `retention update {name}`,"
        f" pick another name, or `retention disconnect {name}` first"
    )


def queued_account(account_id: int) -> tuple[Settings, Engine, Account | None]:
    """What a worker's task starts from: this process's settings, the shared database, and the account a
    task was queued for (None when it was disconnected since, which is not an error)."""
    settings = get_settings()
    engine = ensure_schema(settings.database_url)
    with Session(engine, expire_on_commit=False) as session:
        return settings, engine, session.get(Account, account_id)
