"""What an account holds as a whole: how many objects of each kind a sync stored, and how many of them Stripe
no longer has (`retention status`).

Plain DB-API queries (metrics/dbapi.py), one round trip for all the counts: `status` reads them without
importing SQLAlchemy (README: start-up time). The table names are the models' (integrations/stripe/models.py;
tests/integrations/stripe/repository/test_counts.py holds them to it).
"""

from __future__ import annotations

from metrics.dbapi import Reader

# The kinds `retention status` counts, in the order it prints them (names as in docs/interface.md), and their
# tables.
COUNTED = {
    "customers": "stripe_customer",
    "products": "stripe_product",
    "prices": "stripe_price",
    "subscriptions": "stripe_subscription",
    "invoices": "stripe_invoice",
    "line_items": "stripe_invoice_line",
    "credit_notes": "stripe_credit_note",
}

# The kinds a full sync marks deleted when Stripe no longer lists them (`status` shows how many).
DELETABLE = {"customers": "stripe_customer", "subscriptions": "stripe_subscription"}


def _counts(tables: dict[str, str], condition: str) -> str:
    """One SELECT of a count per table, each of the account's rows meeting `condition` (table names and
    condition are this module's constants, never input)."""
    counts = [f"(SELECT count(*) FROM {t} WHERE account_id = ?{condition})" for t in tables.values()]  # noqa: S608
    return "SELECT " + ", ".join(counts)


_OBJECT_COUNTS = _counts(COUNTED, "")
_DELETED_COUNTS = _counts(DELETABLE, " AND deleted")


def object_counts(db: Reader, account_id: int) -> dict[str, int]:
    """Objects stored per kind, whatever their status (docs/interface.md `status`)."""
    found = db.row(_OBJECT_COUNTS, *[account_id] * len(COUNTED)) or ()
    return {name: int(n or 0) for name, n in zip(COUNTED, found, strict=True)}


def deleted_counts(db: Reader, account_id: int) -> dict[str, int]:
    """Stored objects marked deleted in Stripe, per kind: kept (their history counts), left out of every
    figure from their deletion on."""
    found = db.row(_DELETED_COUNTS, *[account_id] * len(DELETABLE)) or ()
    return {name: int(n or 0) for name, n in zip(DELETABLE, found, strict=True)}
