"""Accounts for nightly tests, stored as `connect` would store them (key encrypted) without a Stripe call."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from worker.db import session_scope
from worker.models import Account
from worker.secrets import Secret, encrypt, mask
from worker.settings import Settings


def add_account(
    engine: Engine,
    settings: Settings,
    name: str,
    api_base: str = "http://127.0.0.1:9",
    key: str = "sk_test_123",
    slack_webhook_url: str | None = None,
) -> Account:
    account = Account(
        name=name,
        api_base=api_base,
        reporting_currency="usd",
        key_encrypted=encrypt(settings, Secret(key)),
        key_mask=mask(key),
        rps=0,
        slack_webhook_encrypted=encrypt(settings, Secret(slack_webhook_url)) if slack_webhook_url else None,
    )
    with session_scope(engine) as session:
        session.add(account)
    return account
