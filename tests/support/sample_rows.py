"""Test helper: the sample company (worker/demo/sample.py) stored as a full sync would store it, no server.

For tests about what is computed from stored rows (the backtest, the report), where the sync itself is not
under test: the world's objects go through the same parsers and upserts a sync uses.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from integrations.stripe import models, records
from integrations.stripe.store import upsert
from metrics.tables import table_of
from worker.demo.stripe_server import StripeWorld
from worker.models import Account


def store_world(engine: Engine, account: Account, world: StripeWorld) -> None:
    aid = account.id or 0
    coll = world.collections
    with engine.begin() as conn:
        upsert(
            conn,
            table_of(models.StripeCustomer),
            [records.parse_customer(o) for o in coll["customer"].by_id.values()],
            aid,
        )
        upsert(
            conn,
            table_of(models.StripeProduct),
            [records.parse_product(o) for o in coll["product"].by_id.values()],
            aid,
        )
        upsert(
            conn,
            table_of(models.StripePrice),
            [records.parse_price(o) for o in coll["price"].by_id.values()],
            aid,
        )
        subs, items = [], []
        for obj in coll["subscription"].by_id.values():
            row, its = records.parse_subscription(obj)
            subs.append(row)
            items.extend(its)
        upsert(conn, table_of(models.StripeSubscription), subs, aid)
        upsert(conn, table_of(models.StripeSubscriptionItem), items, aid)
        invoices, lines = [], []
        for inv_id, obj in coll["invoice"].by_id.items():
            full = {
                **obj,
                "lines": {**obj["lines"], "data": world.invoice_lines.get(inv_id) or obj["lines"]["data"]},
            }
            row, found, bad = records.parse_invoice(full)
            assert not bad, bad
            invoices.append(row)
            lines.extend(found)
        upsert(conn, table_of(models.StripeInvoice), invoices, aid)
        upsert(conn, table_of(models.StripeInvoiceLine), lines, aid)
