"""A first full sync into empty SQLite tables builds the customer indexes at its end, resumes without them,
and leaves every index of the models in place; anything else keeps them throughout."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import DropIndex

from integrations.stripe import deferred_indexes
from integrations.stripe import sync as sync_module
from integrations.stripe.models import StripeInvoice, StripeInvoiceLine, StripeSubscription, SyncState
from metrics.tables import table_of
from tests.integrations.stripe.test_sync import fail_storing_invoices, new_account, syncer
from tests.support.stripe_world import snapshot
from worker.demo.stripe_server import FakeStripe

TABLES = [table_of(m) for m in (StripeSubscription, StripeInvoice, StripeInvoiceLine)]
EVERY = {str(index.name) for table in TABLES for index in table.indexes}
CUSTOMER = {str(index.name) for index in deferred_indexes.DEFERRED}


def present(conn: Connection) -> set[str]:
    found = {str(i["name"]) for table in TABLES for i in inspect(conn).get_indexes(table.name)}
    return found & EVERY


def test_the_deferred_indexes_are_the_customer_ones() -> None:
    assert {
        "ix_stripe_subscription_customer",
        "ix_stripe_invoice_customer",
        "ix_stripe_invoice_failable",
        "ix_stripe_invoice_line_customer",
    } == CUSTOMER


def indexes_while_storing(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> list[set[str]]:
    """The indexes there as each invoice page is stored (the schema, seen from a connection of its own: on
    SQLite the pages go to a separate writer process)."""
    seen: list[set[str]] = []
    store_page = sync_module.store_page

    def spying(conn: Any, account_id: int, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "invoices":
            with engine.connect() as reading:
                seen.append(present(reading))
        return store_page(conn, account_id, name, *args, **kwargs)

    monkeypatch.setattr(sync_module, "store_page", spying)
    return seen


def test_a_first_sync_stores_without_the_customer_indexes_on_sqlite_and_builds_them_at_its_end(
    engine: Engine, server: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = indexes_while_storing(monkeypatch, engine)
    account_id = new_account(engine, server)
    syncer(engine, account_id, server).run()
    expected = EVERY - CUSTOMER if engine.dialect.name == "sqlite" else EVERY  # PostgreSQL keeps them
    assert seen and all(s == expected for s in seen)
    with engine.connect() as conn:
        assert present(conn) == EVERY


def test_a_sync_into_tables_holding_another_account_keeps_every_index(
    engine: Engine, server: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncer(engine, new_account(engine, server), server).run()
    seen = indexes_while_storing(monkeypatch, engine)
    second = new_account(engine, server, name="second")
    syncer(engine, second, server).run(full=True)
    assert seen and all(s == EVERY for s in seen)


def test_an_interrupted_deferring_sync_resumes_without_them_and_then_builds_them(
    engine: Engine, server: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_page = fail_storing_invoices(monkeypatch)
    account_id = new_account(engine, server)
    with pytest.raises(RuntimeError, match="disk full"):
        syncer(engine, account_id, server, workers=2).run()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        checkpoint = conn.execute(select(table_of(SyncState).c.checkpoint)).scalar()
        assert checkpoint["full"]["deferred_indexes"] is sqlite
        assert present(conn) == (EVERY - CUSTOMER if sqlite else EVERY)

    monkeypatch.setattr(sync_module, "store_page", store_page)
    seen = indexes_while_storing(monkeypatch, engine)
    outcome = syncer(engine, account_id, server).run()
    assert outcome.resumed
    assert seen and all(s == (EVERY - CUSTOMER if sqlite else EVERY) for s in seen)
    with engine.connect() as conn:
        assert present(conn) == EVERY
    clean = new_account(engine, server, name="clean")
    syncer(engine, clean, server).run()
    assert snapshot(engine, account_id) == snapshot(engine, clean)


def test_any_run_builds_indexes_a_deferring_sync_left_out(engine: Engine, server: FakeStripe) -> None:
    """As when the account of an unfinished first sync was removed and another one connected."""
    account_id = new_account(engine, server)
    syncer(engine, account_id, server).run()
    with engine.begin() as conn:
        for index in deferred_indexes.DEFERRED:
            conn.execute(DropIndex(index))
        assert present(conn) == EVERY - CUSTOMER
    assert syncer(engine, account_id, server).run().mode == "incremental"
    with engine.connect() as conn:
        assert present(conn) == EVERY
