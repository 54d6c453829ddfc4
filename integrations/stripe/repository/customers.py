"""Reads of stored customers: names for the payloads, whether one is stored, one of them for an example.

Commands show a customer's name beside its id; these used to be small queries written where they were
needed, so they live here once, tested on SQLite and PostgreSQL. The counts `retention status` shows are in
counts.py.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from integrations.stripe import models
from metrics.tables import table_of


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


def any_customer_id(conn: Connection, account_id: int) -> str | None:
    """One stored customer's id (the lowest), or None when the account has none stored."""
    c = table_of(models.StripeCustomer)
    query = select(func.min(c.c.id)).where(c.c.account_id == account_id)
    found = conn.execute(query).scalar()
    return str(found) if found is not None else None
