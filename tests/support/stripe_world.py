"""A small deterministic Stripe account for sync tests, built from the builders (current or older shapes)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from integrations.stripe.models import STRIPE_TABLES
from integrations.stripe.repository.counts import object_counts
from metrics.dbapi import reader_of
from metrics.tables import table_of
from worker.db import session_scope
from worker.demo import builders as b
from worker.demo.stripe_server import StripeWorld
from worker.models import Account
from worker.secrets import Secret, encrypt
from worker.settings import get_settings

KEY = "sk_test_123"

DAY = 86400
T0 = 1_700_000_000  # 2023-11-14


def build_world(
    customers: int = 30,
    months: int = 6,
    legacy: bool = False,
    start: int = T0,
    world: StripeWorld | None = None,
) -> StripeWorld:
    """`customers` customers, one monthly subscription and invoice a month each; every 5th has 13 lines
    (more than Stripe embeds), every 7th subscription is canceled, plus a credit note per 10th customer."""
    world = world or StripeWorld()
    prod = b.product("prod_basic", "Basic", created=start - DAY)
    prices = [
        b.price(f"price_{n}", "prod_basic", 1000 * (n + 1), created=start - DAY, active=n != 2)
        for n in range(3)
    ]
    world.add_all([prod, *prices])
    for c in range(customers):
        cid = f"cus_{c:05d}"
        created = start + c * 3600
        world.add(b.customer(cid, f"Customer {c}", created=created))
        price = prices[c % 3]
        sub_id = f"sub_{c:05d}"
        item = b.subscription_item(
            f"si_{c:05d}",
            sub_id,
            price,
            quantity=1 + c % 4,
            period=(created + (months - 1) * 30 * DAY, created + months * 30 * DAY),
        )
        status = "canceled" if c % 7 == 3 else "active"
        world.add(
            b.subscription(
                sub_id,
                cid,
                [item],
                status=status,
                created=created,
                canceled_at=created + DAY if status == "canceled" else None,
                legacy=legacy,
            )
        )
        for m in range(months):
            inv_id = f"in_{c:05d}_{m:02d}"
            when = created + m * 30 * DAY
            nlines = 13 if c % 5 == 0 else 1
            lines = [
                b.line(
                    f"il_{c:05d}_{m:02d}_{k:02d}",
                    inv_id,
                    price["unit_amount"] * (1 + c % 4),
                    (when, when + 30 * DAY),
                    price_obj=price,
                    subscription=sub_id,
                    subscription_item=f"si_{c:05d}",
                    discounts=[100] if k == 0 else None,
                    taxes=[(50, "inclusive")] if k == 1 else None,
                    legacy=legacy,
                )
                for k in range(nlines)
            ]
            status = "draft" if m == months - 1 and c % 6 == 1 else "paid"
            world.add(
                b.invoice(
                    inv_id,
                    cid,
                    lines,
                    status=status,
                    created=when,
                    subscription=sub_id,
                    period=(when, when + 30 * DAY),
                    legacy=legacy,
                )
            )
        if c % 10 == 0:
            world.add(b.credit_note(f"cn_{c:05d}", f"in_{c:05d}_00", cid, 500, created=created + DAY))
    return world


def world_totals(world: StripeWorld) -> dict[str, int]:
    """What a complete sync must store, counted from the world itself (not from our code)."""
    c = world.collections
    return {
        "customers": sum(1 for o in c["customer"].by_id.values() if not o.get("deleted")),
        "products": len(c["product"].by_id),
        "prices": len(c["price"].by_id),
        "subscriptions": len(c["subscription"].by_id),
        "invoices": len(c["invoice"].by_id),
        "line_items": sum(len(v) for v in world.invoice_lines.values()),
        "credit_notes": len(c["credit_note"].by_id),
    }


def counts(engine: Engine, account_id: int) -> dict[str, int]:
    """What the account has stored per kind, as `retention status` counts it (compared with world_totals)."""
    with engine.connect() as conn:
        return object_counts(reader_of(conn), account_id)


def add_account(engine: Engine, api_base: str, name: str = "acme", rps: float = 0) -> Account:
    """A connected account row (key encrypted as `connect` stores it) without the connect round trip."""
    with session_scope(engine) as session:
        account = Account(
            name=name,
            api_base=api_base,
            rps=rps,
            key_encrypted=encrypt(get_settings(), Secret(KEY)),
            key_mask="sk_test_...t_123",
        )
        session.add(account)
        session.flush()
        session.refresh(account)
    return account


def snapshot(engine: Engine, account_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored Stripe row of the account, sorted, JSON serialized: equal snapshots = equal data.

    `listed_at` is left out: it is the sync's bookkeeping (which full sync last listed the row), not data."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for model in STRIPE_TABLES:
            table = table_of(model)
            columns = [c for c in table.c if c.name not in ("account_id", "listed_at")]
            rows = conn.execute(select(*columns).where(table.c.account_id == account_id)).all()
            out[table.name] = sorted(
                tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v for v in row)
                for row in rows
            )
    return out
