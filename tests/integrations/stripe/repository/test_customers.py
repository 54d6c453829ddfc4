"""Customer names, stored-object counts and the last sync's outcome, read on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from integrations.stripe.models import SyncState
from integrations.stripe.repository.counts import object_counts
from integrations.stripe.repository.customers import CustomerName, customer_names, has_customer
from integrations.stripe.repository.sync_state import sync_state
from metrics.dbapi import reader_of
from tests.support.stripe_rows import make_account, store
from worker.demo import builders as b


def _world() -> list[dict]:
    pro = b.price("price_pro", "prod_pro", 10_000)
    item = b.subscription_item("si_1", "sub_1", pro, period=(100, 200))
    line = b.line("il_1", "in_1", 10_000, (100, 200), price_obj=pro, subscription="sub_1")
    return [
        b.customer("cus_named", "Named Co", email="billing@named.test"),
        b.customer("cus_email", None, email="ops@email.test"),
        b.product("prod_pro", "Pro"),
        pro,
        b.subscription("sub_1", "cus_named", [item]),
        b.invoice("in_1", "cus_named", [line], subscription="sub_1"),
    ]


def test_names_are_per_account_and_keep_a_missing_name_as_none(engine: Engine) -> None:
    acme, other = make_account(engine, "acme"), make_account(engine, "other")
    store(engine, acme, _world())
    store(engine, other, [b.customer("cus_named", "Someone Else")])
    with engine.connect() as conn:
        found = sorted(customer_names(conn, acme.id or 0))
        theirs = customer_names(conn, other.id or 0)
        asked = customer_names(conn, acme.id or 0, ["cus_email", "cus_missing"])
    assert asked == [CustomerName("cus_email", None, "ops@email.test")]
    assert found == [
        CustomerName("cus_email", None, "ops@email.test"),
        CustomerName("cus_named", "Named Co", "billing@named.test"),
    ]
    assert theirs == [CustomerName("cus_named", "Someone Else", None)]


def test_has_customer_looks_in_one_account_only(engine: Engine) -> None:
    acme, other = make_account(engine, "acme"), make_account(engine, "other")
    store(engine, acme, _world())
    with engine.connect() as conn:
        assert has_customer(conn, acme.id or 0, "cus_email")
        assert not has_customer(conn, acme.id or 0, "cus_missing")
        assert not has_customer(conn, other.id or 0, "cus_email")


def test_object_counts_cover_every_kind_in_order(engine: Engine) -> None:
    acme, other = make_account(engine, "acme"), make_account(engine, "other")
    store(engine, acme, _world())
    with engine.connect() as conn:
        counts = object_counts(reader_of(conn), acme.id or 0)
        empty = object_counts(reader_of(conn), other.id or 0)
    assert counts == {
        "customers": 2,
        "products": 1,
        "prices": 1,
        "subscriptions": 1,
        "invoices": 1,
        "line_items": 1,
        "credit_notes": 0,
    }
    assert list(counts) == list(empty) and set(empty.values()) == {0}


def test_the_last_sync_outcome_is_none_before_the_first_sync(engine: Engine) -> None:
    account = make_account(engine)
    with engine.connect() as conn:
        assert sync_state(reader_of(conn), account.id or 0) is None
    rejected = [{"object": "customer", "id": "cus_x", "error": "created: not an integer"}]
    with Session(engine) as session:
        session.add(
            SyncState(
                account_id=account.id or 0,
                mode="incremental",
                last_sync_at=1_700_000_000,
                last_sync_ok=False,
                last_error="StripeReadError: 500",
                rejected=rejected,
            )
        )
        session.commit()
    with engine.connect() as conn:
        outcome = sync_state(reader_of(conn), account.id or 0)
    assert outcome is not None
    shown = (outcome.last_sync_at, outcome.last_sync_ok, outcome.last_error, outcome.mode, outcome.rejected)
    assert shown == (1_700_000_000, False, "StripeReadError: 500", "incremental", rejected)
