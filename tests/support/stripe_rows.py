"""Test helper: store Stripe-shaped builder objects as the sync stores them, for rebuild tests without a sync.

Objects go through the sync's own parsers and upserts (integrations/stripe/records.py, store.py), so the rows
are exactly what a sync would write; only the HTTP part is skipped.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from integrations.stripe import models, records
from integrations.stripe.store import upsert
from metrics.tables import table_of
from worker.models import Account

Obj = dict[str, Any]


def make_account(engine: Engine, name: str = "acme", currency: str = "usd") -> Account:
    with Session(engine, expire_on_commit=False) as s:
        account = Account(name=name, key_encrypted="x", reporting_currency=currency)
        s.add(account)
        s.commit()
        s.refresh(account)
        return account


def store(engine: Engine, account: Account, objs: list[Obj]) -> None:
    """Store customers, products, prices, subscriptions (with items) and invoices (with all their lines)."""
    aid = account.id or 0
    with engine.begin() as conn:
        for o in objs:
            kind = o["object"]
            if kind == "customer":
                upsert(conn, table_of(models.StripeCustomer), [records.parse_customer(o)], aid)
            elif kind == "product":
                upsert(conn, table_of(models.StripeProduct), [records.parse_product(o)], aid)
            elif kind == "price":
                upsert(conn, table_of(models.StripePrice), [records.parse_price(o)], aid)
            elif kind == "subscription":
                row, items = records.parse_subscription(o)
                upsert(conn, table_of(models.StripeSubscription), [row], aid)
                upsert(conn, table_of(models.StripeSubscriptionItem), items, aid)
            elif kind == "invoice":
                full = dict(o)
                full["lines"] = {**o["lines"], "data": o.get("_all_lines") or o["lines"]["data"]}
                full.pop("_all_lines", None)
                row, lines, bad = records.parse_invoice(full)
                assert not bad, bad
                upsert(conn, table_of(models.StripeInvoice), [row], aid)
                upsert(conn, table_of(models.StripeInvoiceLine), lines, aid)
