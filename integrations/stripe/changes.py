"""What changed in Stripe since the ledger was last built (the pending_change table).

An incremental sync notes, in the transaction that stores a page, the customer each stored customer,
subscription or invoice belongs to, and the prices and products it stored; a full sync notes `all`. The
rebuild (worker/rebuild.py) reads the notes, recomputes the ledger and snapshots of those customers only (or
of every customer after `all`), then clears what it read, in its own transaction: a change noted while it ran
stays for the next rebuild.

Credit notes are not noted: the ledger does not read them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from integrations.stripe.models import PendingChange
from metrics.tables import table_of

ALL, CUSTOMER, PRICE, PRODUCT = "all", "customer", "price", "product"
T = table_of(PendingChange)


def _customer_of(obj: Any) -> str | None:
    """The customer a subscription or invoice names (`customer` may be expanded into an object)."""
    value = obj.get("customer") if isinstance(obj, dict) else None
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _ids(objects: Iterable[Any]) -> set[str]:
    return {o["id"] for o in objects if isinstance(o, dict) and isinstance(o.get("id"), str)}


def note_page(conn: Connection, account_id: int, list_name: str, objects: list[Any]) -> None:
    """Note what one stored page of a Stripe list changes in the ledger (see the module docstring)."""
    if list_name == "customers":
        keys = {(CUSTOMER, i) for i in _ids(objects)}
    elif list_name in ("subscriptions", "invoices"):
        keys = {(CUSTOMER, c) for c in map(_customer_of, objects) if c is not None}
    elif list_name == "prices":
        keys = {(PRICE, i) for i in _ids(objects)}
    elif list_name == "products":
        keys = {(PRODUCT, i) for i in _ids(objects)}
    else:
        return
    _note(conn, account_id, keys)


def note_all(conn: Connection, account_id: int) -> None:
    """Every customer must be recomputed (a full sync stores the whole account again)."""
    _note(conn, account_id, {(ALL, "")})


def _note(conn: Connection, account_id: int, keys: set[tuple[str, str]]) -> None:
    if not keys:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(T)
    stmt = stmt.on_conflict_do_update(
        index_elements=["account_id", "kind", "object_id"], set_={"noted_at": stmt.excluded.noted_at}
    )
    now = time.time_ns()
    conn.execute(
        stmt, [{"account_id": account_id, "kind": k, "object_id": i, "noted_at": now} for k, i in keys]
    )


@dataclass
class Pending:
    """The changes noted for an account: `upto` is the newest note read (what clear() may remove)."""

    all: bool = False
    customers: set[str] = field(default_factory=set)
    prices: set[str] = field(default_factory=set)
    products: set[str] = field(default_factory=set)
    upto: int | None = None


def pending(conn: Connection, account_id: int) -> Pending:
    """Every change noted for the account (a few rows per changed customer; nothing on a quiet night)."""
    found = Pending()
    by_kind = {CUSTOMER: found.customers, PRICE: found.prices, PRODUCT: found.products}
    rows = conn.execute(select(T.c.kind, T.c.object_id, T.c.noted_at).where(T.c.account_id == account_id))
    for kind, object_id, noted_at in rows:
        if kind == ALL:
            found.all = True
        elif kind in by_kind:
            by_kind[kind].add(object_id)
        found.upto = noted_at if found.upto is None else max(found.upto, noted_at)
    return found


def has_pending(conn: Connection, account_id: int) -> bool:
    """Whether any change waits for a rebuild."""
    return bool(
        conn.execute(select(func.count()).select_from(T).where(T.c.account_id == account_id)).scalar()
    )


def clear(conn: Connection, account_id: int, upto: int | None) -> None:
    """Forget the notes a rebuild read (noted at or before `upto`); later ones stay."""
    if upto is not None:
        conn.execute(delete(T).where(T.c.account_id == account_id, T.c.noted_at <= upto))
