"""The counts `retention status` shows, on SQLite and PostgreSQL; the table names are the models'."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from integrations.stripe import models
from integrations.stripe.repository.counts import COUNTED, DELETABLE, deleted_counts, object_counts
from metrics.dbapi import reader_of
from tests.support.stripe_rows import make_account, store
from worker.demo import builders as b


def test_the_counted_tables_are_the_models() -> None:
    assert {
        "customers": models.StripeCustomer.__tablename__,
        "products": models.StripeProduct.__tablename__,
        "prices": models.StripePrice.__tablename__,
        "subscriptions": models.StripeSubscription.__tablename__,
        "invoices": models.StripeInvoice.__tablename__,
        "line_items": models.StripeInvoiceLine.__tablename__,
        "credit_notes": models.StripeCreditNote.__tablename__,
    } == COUNTED
    assert {k: COUNTED[k] for k in ("customers", "subscriptions")} == DELETABLE


def test_deleted_counts_are_per_account_and_kind(engine: Engine) -> None:
    acme, other = make_account(engine, "acme"), make_account(engine, "other")
    store(engine, acme, [b.customer("cus_a"), b.customer("cus_b"), b.customer("cus_c")])
    store(engine, acme, [b.customer("cus_b", deleted=True), b.customer("cus_c", deleted=True)])
    store(engine, other, [b.customer("cus_x")])
    store(engine, other, [b.customer("cus_x", deleted=True)])
    with engine.connect() as conn:
        db = reader_of(conn)
        assert deleted_counts(db, acme.id or 0) == {"customers": 2, "subscriptions": 0}
        assert deleted_counts(db, other.id or 0) == {"customers": 1, "subscriptions": 0}
        assert object_counts(db, acme.id or 0)["customers"] == 3
        assert deleted_counts(db, (other.id or 0) + 1) == {"customers": 0, "subscriptions": 0}
