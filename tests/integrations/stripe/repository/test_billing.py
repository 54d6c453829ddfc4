"""The billing reads the rebuild makes, on SQLite and PostgreSQL (`engine` runs both): what each returns,
that the invoice and price fields join onto the right line, and that one account never sees another's rows."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from integrations.stripe import records
from integrations.stripe.models import (
    StripeInvoice,
    StripeInvoiceLine,
    StripeSubscription,
    StripeSubscriptionItem,
)
from integrations.stripe.repository import billing
from integrations.stripe.store import upsert
from metrics.tables import table_of
from tests.support.pg import create_database, drop_database
from tests.support.rebuild_worlds import T, monthly_world
from tests.support.sql_capture import capture_sql
from tests.support.stripe_rows import make_account, store
from worker.db import ensure_schema
from worker.demo import builders as b


def test_stored_lines_carry_their_invoice_and_price_in_line_id_order(engine: Engine) -> None:
    account = make_account(engine)
    other = make_account(engine, name="other")
    store(engine, account, monthly_world())
    store(engine, other, [b.invoice("in_x", "cus_x", [b.line("il_x", "in_x", 5, (T(2026, 1), T(2026, 2)))])])
    with engine.connect() as conn:
        lines = list(billing.stored_lines(conn, account.id or 0))
    assert [ln.id for ln in lines] == sorted(["il_a0", "il_a1", "il_a2", "il_setup", "il_void", "il_b"])
    assert all(isinstance(ln, billing.StoredLine) for ln in lines)
    by_id = {ln.id: ln for ln in lines}
    yearly = by_id["il_b"]
    assert (yearly.invoice_id, yearly.amount, yearly.period_start, yearly.period_end) == (
        "in_b",
        120000,
        T(2026, 1),
        T(2027, 1),
    )
    assert (yearly.invoice_customer_id, yearly.invoice_status, yearly.invoice_created) == (
        "cus_b",
        "paid",
        T(2026, 1),
    )
    assert yearly.invoice_subscription_id == "sub_b" and yearly.subscription_item_id == "si_b"
    assert (yearly.price_id, yearly.price_product_id, yearly.price_type) == (
        "price_y",
        "prod_pro",
        "recurring",
    )
    assert (yearly.price_interval, yearly.price_interval_count, yearly.price_usage_type) == (
        "year",
        1,
        "licensed",
    )
    assert by_id["il_void"].invoice_status == "void"
    setup = by_id["il_setup"]  # no price: the price's fields are None
    assert setup.price_id is None and (setup.price_type, setup.price_interval) == (None, None)
    assert bool(setup.proration) is False


def test_a_line_whose_invoice_and_price_are_not_stored_has_none_for_their_fields(engine: Engine) -> None:
    account = make_account(engine)
    price = b.price("price_gone", "prod_gone", 700)
    _, (row,), _ = records.parse_invoice(
        b.invoice(
            "in_gone", "cus_o", [b.line("il_o", "in_gone", 700, (T(2026, 1), T(2026, 2)), price_obj=price)]
        )
    )
    with engine.begin() as conn:  # only the line: neither its invoice nor its price is stored
        upsert(conn, table_of(StripeInvoiceLine), [row], account.id or 0)
    with engine.connect() as conn:
        (line,) = billing.stored_lines(conn, account.id or 0)
    assert (line.id, line.invoice_id, line.price_id, line.amount) == ("il_o", "in_gone", "price_gone", 700)
    assert line[len(line) - 10 :] == (None,) * 10  # the invoice's five fields, then the price's five


def test_subscriptions_and_their_items_with_prices(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, monthly_world())
    with engine.connect() as conn:
        subs = {s.id: s for s in billing.subscriptions(conn, account.id or 0)}
        items = billing.subscription_items(conn, account.id or 0)
    assert subs["sub_a"] == billing.StoredSubscription(
        "sub_a",
        "cus_a",
        "active",
        None,
        None,
        None,
        subs["sub_a"].current_period_start,
        subs["sub_a"].current_period_end,
        None,  # listed by Stripe: not deleted
    )
    canceled = subs["sub_b"]
    assert (canceled.status, canceled.ended_at, canceled.canceled_at) == (
        "canceled",
        T(2026, 3, 10),
        T(2026, 3, 10),
    )
    assert [(i.subscription_id, i.id) for i in items] == [("sub_a", "si_a"), ("sub_b", "si_b")]
    monthly = items[0]
    assert isinstance(monthly, billing.PricedItem)
    assert (monthly.price_id, monthly.quantity, monthly.current_period_start) == ("price_m", 1, T(2026, 3))
    assert (monthly.product_id, monthly.currency, monthly.unit_amount) == ("prod_pro", "usd", 10000)
    assert (monthly.type, monthly.interval, monthly.interval_count, monthly.usage_type) == (
        "recurring",
        "month",
        1,
        "licensed",
    )


def test_product_names_and_whether_any_line_is_stored(engine: Engine) -> None:
    account = make_account(engine)
    empty = make_account(engine, name="empty")
    store(engine, account, [*monthly_world(), {**b.product("prod_anon", "x"), "name": None}])
    with engine.connect() as conn:
        assert billing.product_names(conn, account.id or 0) == {
            "prod_pro": "Pro"
        }  # a product without a name is left out
        assert billing.product_names(conn, empty.id or 0) == {}
        assert billing.has_lines(conn, account.id or 0)
        assert not billing.has_lines(conn, empty.id or 0)


def test_a_batch_of_customers_is_read_through_the_account_and_customer_index(sqlite_engine: Engine) -> None:
    """SQLite, given the customer (or parent) index alone, walked every invoice, subscription or item of the
    account for each batch of a rebuild or page of a sync (quadratic in customers): it must search the
    (account, customer) and (account, parent) indexes."""
    searched = {}
    with sqlite_engine.connect() as conn:
        for model, column in (
            (StripeInvoice, "customer_id"),
            (StripeSubscription, "customer_id"),
            (StripeSubscriptionItem, "subscription_id"),
            (StripeInvoiceLine, "invoice_id"),
        ):
            t = table_of(model)
            query = select(t.c.id).where(t.c.account_id == 1, t.c[column].in_(["a", "b"]))
            sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            searched[t.name] = " ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert searched == {
        "stripe_invoice": "SEARCH stripe_invoice USING INDEX ix_stripe_invoice_customer "
        "(account_id=? AND customer_id=?)",
        "stripe_subscription": "SEARCH stripe_subscription USING INDEX ix_stripe_subscription_customer "
        "(account_id=? AND customer_id=?)",
        "stripe_subscription_item": "SEARCH stripe_subscription_item USING INDEX "
        "ix_stripe_subscription_item_parent (account_id=? AND subscription_id=?)",
        "stripe_invoice_line": "SEARCH stripe_invoice_line USING INDEX ix_stripe_invoice_line_parent "
        "(account_id=? AND invoice_id=?)",
    }


# Customer ids that bytes and a natural-language collation order differently ("cus_B" < "cus_a" by bytes).
_IDS = ["cus_a", "cus_B", "cus_b2", "cus_Z9", "cus__x", "cus_0", "cus_é"]


def _customers_world() -> list[dict]:
    """A few invoices and lines per customer (one line on a price that is not stored), stored in an order
    that is neither the customers' nor the lines'."""
    monthly = b.price("price_m", "prod_pro", 1_000)
    objs: list[dict] = [b.product("prod_pro", "Pro"), monthly]
    for n, customer in enumerate(reversed(_IDS)):
        for month in range(1 + n % 3):
            inv = f"in_{n}_{month}"
            period = (T(2026, month + 1), T(2026, month + 2))
            lines = [
                b.line(f"il_{9 - n}_{month}_{k}", inv, 1_000 + k, period, price_obj=monthly) for k in range(2)
            ]
            if month == 1:
                gone = b.price("price_gone", "prod_gone", 50)  # not stored: the price's fields are None
                lines.append(b.line(f"il_gone_{n}", inv, 50, period, price_obj=gone))
            objs.append(b.invoice(inv, customer, lines, created=T(2026, month + 1)))
    return objs


def _assert_streamed_batches_equal_batch_reads(engine: Engine) -> None:
    account, other = make_account(engine), make_account(engine, name="other")
    store(engine, account, _customers_world())
    store(engine, other, _customers_world())  # the same ids under another account: never read
    extra = b.line("il_other", "in_other", 7, (T(2026, 1), T(2026, 2)))
    store(engine, other, [b.invoice("in_other", "cus_a", [extra])])
    aid = account.id or 0
    orphan = b.invoice("in_orphan", "cus_x", [b.line("il_orphan", "in_orphan", 5, (T(2026, 1), T(2026, 2)))])
    _, (row,), _ = records.parse_invoice(orphan)
    with engine.begin() as conn:  # a stored line naming no customer: in no batch
        upsert(conn, table_of(StripeInvoiceLine), [{**row, "customer_id": None}], aid)
    with engine.connect() as conn:
        customers = billing.customer_ids(conn, aid)
        assert customers == sorted(_IDS)  # by code point, as the streams must deliver them
        prices = billing.price_fields(conn, aid)
        for size in (1, 2, 3, len(customers)):
            slices = [customers[i : i + size] for i in range(0, len(customers), size)]
            expected = [billing.lines_of(conn, aid, batch, prices) for batch in slices]
            assert list(billing.lines_in_batches(conn, aid, slices, prices)) == expected, f"batches of {size}"
            assert sum(map(len, expected)) == 13 * 2 + 4  # every line of the account (13 invoices), once
        assert list(billing.lines_in_batches(conn, aid, [], prices)) == []


def test_a_whole_account_streamed_in_batches_reads_as_batch_by_batch(engine: Engine) -> None:
    """The full rebuild's two sorted scans give each batch exactly the lines (and invoice and price fields, in
    the same order) that reading the batch through the customer index gives."""
    _assert_streamed_batches_equal_batch_reads(engine)


def test_the_streams_order_ids_by_bytes_in_a_database_whose_locale_does_not(pg_database_url: str) -> None:
    """PostgreSQL orders text by the database's locale: in an ICU English one "cus_a" < "cus_B", and a batch
    would miss lines its customers' slice (in Python's order) holds. The streams order byte-wise."""
    url = create_database("rt_icu", "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'")
    try:
        engine = ensure_schema(url)
        with engine.connect() as conn:  # the premise: this database orders text otherwise than bytes
            ordered = conn.exec_driver_sql("SELECT x FROM (VALUES ('cus_B'), ('cus_a')) v(x) ORDER BY x")
            assert [x for (x,) in ordered] == ["cus_a", "cus_B"]
        _assert_streamed_batches_equal_batch_reads(engine)
    finally:
        drop_database(url)


def test_the_streams_scan_the_tables_instead_of_seeking_rows_through_an_index(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the customer index, each line of a 100,000-customer account cost a page read of its own; the
    streams must scan each table in storage order and sort in the database."""
    account = make_account(sqlite_engine)
    store(sqlite_engine, account, _customers_world())
    with sqlite_engine.begin() as conn:  # with statistics, as after a full sync
        conn.exec_driver_sql("ANALYZE")
    sql = capture_sql(monkeypatch, billing)
    with sqlite_engine.connect() as conn:
        customers = billing.customer_ids(conn, account.id or 0)
        sql.clear()
        list(billing.lines_in_batches(conn, account.id or 0, [customers], {}))
        plans = [[row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + q)] for q in sql]
    assert plans == [
        ["SCAN stripe_invoice_line", "USE TEMP B-TREE FOR ORDER BY"],
        ["SCAN stripe_invoice", "USE TEMP B-TREE FOR ORDER BY"],
    ]
