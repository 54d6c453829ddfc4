"""What the account commands show: connected accounts with keys masked, the database with no password.

Kept out of the command module so it only parses and prints; nothing here reveals a secret: the key is shown
by its mask and a webhook URL not at all, and the database URL hides its password.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import make_url

from worker.db import normalize_url
from worker.models import Account
from worker.settings import Settings


def accounts_payload(accounts: Iterable[Account]) -> dict[str, Any]:
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
    return make_url(normalize_url(settings.database_url)).render_as_string(hide_password=True)
