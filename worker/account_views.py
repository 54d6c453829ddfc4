"""What the account commands show: connected accounts with keys masked, the database with no password.

The accounts' read for `retention accounts` and `retention status` lives here as a plain DB-API query
(metrics/dbapi.py), so those commands start without importing SQLAlchemy (README: start-up time); commands
that go on to change an account load it through worker/accounts.py instead. Nothing here reveals a secret: the
key is shown by its mask, a webhook URL not at all (only whether the account has its own), and the database
URL hides its password.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from metrics.dbapi import Reader

if TYPE_CHECKING:
    from worker.settings import Settings


class AccountRow(NamedTuple):
    """A connected account as the listing shows it; no secret, not even encrypted."""

    id: int
    name: str
    stripe_account: str
    display_name: str
    api_base: str
    reporting_currency: str
    key_mask: str
    own_webhook: bool  # the account has its own Slack webhook (else SLACK_WEBHOOK_URL serves)
    rps: float | None


_ACCOUNTS = (
    "SELECT id, name, stripe_account, display_name, api_base, reporting_currency, key_mask,"
    " COALESCE(slack_webhook_encrypted, '') <> '', rps FROM account"
)


def account_rows(db: Reader, name: str | None = None) -> list[AccountRow]:
    """Every connected account by name, or the one named `name` (none when there is no such account)."""
    found = (
        db.rows(f"{_ACCOUNTS} ORDER BY name")
        if name is None
        else db.rows(f"{_ACCOUNTS} WHERE name = ?", name)
    )
    return [
        AccountRow(
            id=row[0],
            name=row[1],
            stripe_account=row[2],
            display_name=row[3],
            api_base=row[4],
            reporting_currency=row[5],
            key_mask=row[6],
            own_webhook=bool(row[7]),
            rps=row[8],
        )
        for row in found
    ]


def accounts_payload(accounts: Iterable[AccountRow]) -> dict[str, Any]:
    """`retention accounts --json`."""
    return {
        "accounts": [
            {
                "name": a.name,
                "stripe_account": a.stripe_account,
                "api_base": a.api_base,
                "reporting_currency": a.reporting_currency,
                "key": a.key_mask,
            }
            for a in accounts
        ]
    }


def shown_database_url(settings: Settings) -> str:
    """The database as the driver sees it (postgres:// becomes psycopg's URL), its password hidden."""
    from sqlalchemy.engine import make_url

    from worker.db import normalize_url

    return make_url(normalize_url(settings.database_url)).render_as_string(hide_password=True)
