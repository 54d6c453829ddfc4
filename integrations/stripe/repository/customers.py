"""Reads of stored customers and of what an account holds as a whole: names for the payloads, the counts
for `retention status`.

Commands show a customer's name beside its id, and `status` shows how many objects of each kind a sync
stored; these used to be small queries written where they were needed, so they live here once,
tested on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from integrations.stripe import models
from metrics.tables import table_of

# The kinds `retention status` counts, in the order it prints them (names as in docs/interface.md).
COUNTED: dict[str, type] = {
    "customers": models.StripeCustomer,
    "products": models.StripeProduct,
    "prices": models.StripePrice,
    "subscriptions": models.StripeSubscription,
    "invoices": models.StripeInvoice,
    "line_items": models.StripeInvoiceLine,
    "credit_notes": models.StripeCreditNote,
}


class CustomerName(NamedTuple):
    """What a payload may show for a customer: its name, else (where a caller wants one) its email."""

    id: str
    name: str | None
    email: str | None


def customer_names(
    conn: Connection, account_id: int, customer_ids: Collection[str] | None = None
) -> list[CustomerName]:
    """Every stored customer of the account (or of a batch), deleted ones included (their history still
    shows a name)."""
    c = table_of(models.StripeCustomer)
    query = select(c.c.id, c.c.name, c.c.email).where(c.c.account_id == account_id)
    if customer_ids is not None:
        query = query.where(c.c.id.in_(list(customer_ids)))
    return [CustomerName(r.id, r.name, r.email) for r in conn.execute(query)]


def has_customer(conn: Connection, account_id: int, customer_id: str) -> bool:
    """Whether a sync stored this customer for the account."""
    c = table_of(models.StripeCustomer)
    query = select(func.count()).select_from(c).where(c.c.account_id == account_id, c.c.id == customer_id)
    return bool(conn.execute(query).scalar())


# The kinds a full sync marks deleted when Stripe no longer lists them (`status` shows how many).
DELETABLE: dict[str, type] = {"customers": models.StripeCustomer, "subscriptions": models.StripeSubscription}


def deleted_counts(conn: Connection, account_id: int) -> dict[str, int]:
    """Stored objects marked deleted in Stripe, per kind: kept (their history counts), left out of every
    figure from their deletion on."""
    found: dict[str, int] = {}
    for name, model in DELETABLE.items():
        table = table_of(model)
        query = (
            select(func.count())
            .select_from(table)
            .where(table.c.account_id == account_id, table.c.deleted.is_(True))
        )
        found[name] = int(conn.execute(query).scalar() or 0)
    return found


def any_customer_id(conn: Connection, account_id: int) -> str | None:
    """One stored customer's id (the lowest), or None when the account has none stored."""
    c = table_of(models.StripeCustomer)
    query = select(func.min(c.c.id)).where(c.c.account_id == account_id)
    found = conn.execute(query).scalar()
    return str(found) if found is not None else None


def object_counts(conn: Connection, account_id: int) -> dict[str, int]:
    """Objects stored per kind, whatever their status (docs/interface.md `status`)."""
    found: dict[str, int] = {}
    for name, model in COUNTED.items():
        table = table_of(model)
        query = select(func.count()).select_from(table).where(table.c.account_id == account_id)
        found[name] = int(conn.execute(query).scalar() or 0)
    return found
