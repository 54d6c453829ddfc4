"""The at-risk reads of stored Stripe objects and the meter usage writes, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from integrations.stripe import models
from integrations.stripe.repository import billing
from integrations.stripe.repository import risk as stored
from integrations.stripe.repository.risk import (
    InvoiceRow,
    MeterUsageRow,
    PriceRow,
    ProductRow,
    SubscriptionRow,
)
from tests.support.sql_capture import capture_sql
from tests.support.stripe_rows import make_account, store
from worker.demo import builders as b

PERIOD = (1_767_225_600, 1_769_904_000)  # 2026-01-01 .. 2026-02-01


def _world() -> list[dict]:
    seats = b.price("price_seats", "prod_seats", 2_000)
    calls = b.price("price_calls", "prod_calls", 5, usage_type="metered", meter="mtr_calls")
    yearly = b.price("price_year", "prod_seats", 240_000, interval="year")
    live = b.subscription(
        "sub_live",
        "cus_a",
        [
            b.subscription_item("si_seats", "sub_live", seats, quantity=7, period=PERIOD),
            b.subscription_item("si_calls", "sub_live", calls, quantity=None, period=PERIOD),
        ],
        created=100,
        cancel_at_period_end=True,
    )
    gone = b.subscription(
        "sub_gone",
        "cus_b",
        [b.subscription_item("si_year", "sub_gone", yearly, period=PERIOD)],
        status="canceled",
        canceled_at=PERIOD[1],
        ended_at=PERIOD[1],
    )
    paid_line = b.line("il_paid", "in_paid", 14_000, PERIOD, price_obj=seats, quantity=7, discounts=[600])
    paid = b.invoice("in_paid", "cus_a", [paid_line], created=PERIOD[0], subscription="sub_live")
    paid["status_transitions"] = {"paid_at": PERIOD[0] + 60, "voided_at": None}
    late = b.invoice(
        "in_open",
        "cus_a",
        [b.line("il_open", "in_open", 14_000, PERIOD, price_obj=seats)],
        status="open",
        created=PERIOD[0] + 5,
        attempt_count=3,
    )
    draft = b.invoice("in_draft", "cus_a", [b.line("il_draft", "in_draft", 1, PERIOD)], status="draft")
    return [
        b.customer("cus_a", "A"),
        b.customer("cus_b", "B"),
        b.product("prod_seats", "Seats"),
        b.product("prod_calls", "API calls"),
        seats,
        calls,
        yearly,
        live,
        gone,
        paid,
        late,
        draft,
    ]


def test_prices_and_products(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, _world())
    with engine.connect() as conn:
        prices = sorted(stored.prices(conn, account.id or 0))
        metered = stored.prices(conn, account.id or 0, metered_only=True)
        products = sorted(stored.products(conn, account.id or 0))
    assert prices == [
        PriceRow("price_calls", "prod_calls", "month", "mtr_calls"),
        PriceRow("price_seats", "prod_seats", "month", None),
        PriceRow("price_year", "prod_seats", "year", None),
    ]
    assert metered == [PriceRow("price_calls", "prod_calls", "month", "mtr_calls")]
    assert products == [ProductRow("prod_calls", "API calls"), ProductRow("prod_seats", "Seats")]


def test_subscriptions_all_or_by_status(engine: Engine) -> None:
    account, other = make_account(engine, "acme"), make_account(engine, "other")
    store(engine, account, _world())
    with engine.connect() as conn:
        every = {s.id: s for s in stored.subscriptions(conn, account.id or 0)}
        live = stored.subscriptions(conn, account.id or 0, ("active", "past_due"))
        none = stored.subscriptions(conn, other.id or 0)
    assert set(every) == {"sub_live", "sub_gone"} and none == []
    assert [s.id for s in live] == ["sub_live"]
    assert every["sub_live"] == SubscriptionRow(
        "sub_live", "cus_a", "active", 100, PERIOD[0], PERIOD[1], True, None, None, None
    )
    gone = every["sub_gone"]
    assert (gone.status, gone.cancel_at_period_end, gone.canceled_at, gone.ended_at) == (
        "canceled",
        False,
        PERIOD[1],
        PERIOD[1],
    )


def test_subscription_items_all_or_by_price(engine: Engine) -> None:
    """The signals read items through the billing repository, all of them or those on metered prices."""
    account = make_account(engine)
    store(engine, account, _world())
    with engine.connect() as conn:
        every = sorted(billing.subscription_items(conn, account.id or 0))
        calls = billing.subscription_items(conn, account.id or 0, price_ids={"price_calls"})
    assert [i.id for i in every] == ["si_calls", "si_seats", "si_year"]
    assert every[1][:6] == ("si_seats", "sub_live", "price_seats", 7, PERIOD[0], PERIOD[1])
    assert [i[:6] for i in calls] == [("si_calls", "sub_live", "price_calls", None, PERIOD[0], PERIOD[1])]
    assert calls[0].usage_type == "metered"


def test_failable_invoices_in_the_asked_statuses(engine: Engine) -> None:
    """Paid at its first attempt, an invoice can never count as failed: it is not read at all."""
    account = make_account(engine)
    retried = b.invoice(
        "in_retried", "cus_a", [b.line("il_r", "in_retried", 5_000, PERIOD)], created=PERIOD[0]
    )
    retried["attempt_count"] = 2
    store(engine, account, [*_world(), retried])
    with engine.connect() as conn:
        found = sorted(
            stored.failable_invoices(conn, account.id or 0, ("open", "paid", "uncollectible", "void"))
        )
        only_paid = stored.failable_invoices(conn, account.id or 0, ("paid",))
    assert found == [
        InvoiceRow("in_open", "cus_a", "open", PERIOD[0] + 5, 3, 14_000, "usd", None, None),
        InvoiceRow("in_retried", "cus_a", "paid", PERIOD[0], 2, 5_000, "usd", None, None),
    ]
    assert [i.id for i in only_paid] == ["in_retried"]


def test_invoice_dates_are_read_where_a_payment_may_have_failed(engine: Engine) -> None:
    """Paid after a failed attempt, written off, voided: the dates that end the failure are read."""
    account = make_account(engine)
    moments = {
        "finalized_at": PERIOD[0] + 10,
        "paid_at": None,
        "voided_at": None,
        "marked_uncollectible_at": None,
    }
    retried = b.invoice(
        "in_retried", "cus_a", [b.line("il_r", "in_retried", 5_000, PERIOD)], created=PERIOD[0]
    )
    retried["attempt_count"] = 2
    retried["status_transitions"] = {**moments, "paid_at": PERIOD[0] + 99}
    voided = b.invoice(
        "in_voided", "cus_a", [b.line("il_v", "in_voided", 5_000, PERIOD)], status="void", created=PERIOD[0]
    )
    voided["attempt_count"] = 1
    voided["status_transitions"] = {**moments, "voided_at": PERIOD[0] + 77}
    free = b.invoice(
        "in_free", "cus_a", [b.line("il_f", "in_free", 0, PERIOD)], status="void", created=PERIOD[0]
    )
    free["attempt_count"], free["amount_due"] = 1, 0
    free["status_transitions"] = {**moments, "voided_at": PERIOD[0] + 55}
    store(engine, account, [*_world(), retried, voided, free])
    with engine.connect() as conn:
        found = {i.id: i for i in stored.failable_invoices(conn, account.id or 0, ("paid", "void"))}
    assert (found["in_retried"].resolved_at, found["in_retried"].finalized_at) == (
        PERIOD[0] + 99,
        PERIOD[0] + 10,
    )
    assert (found["in_voided"].resolved_at, found["in_voided"].finalized_at) == (
        PERIOD[0] + 77,
        PERIOD[0] + 10,
    )
    assert "in_free" not in found  # nothing was owed


def test_subscriptions_and_invoices_of_some_customers_only(engine: Engine) -> None:
    """The same-day watch reads only the customers its events touched."""
    account = make_account(engine)
    store(engine, account, _world())
    with engine.connect() as conn:
        subs = stored.subscriptions(conn, account.id or 0, customer_ids=["cus_b"])
        invoices = stored.failable_invoices(conn, account.id or 0, ("open", "paid"), customer_ids=["cus_b"])
        theirs = stored.failable_invoices(
            conn, account.id or 0, ("open", "paid"), customer_ids=["cus_a", "cus_x"]
        )
    assert [s.id for s in subs] == ["sub_gone"] and invoices == []
    assert sorted(i.id for i in theirs) == ["in_open"]


def test_meter_usage_is_upserted_per_period_and_read_back(engine: Engine) -> None:
    account, other = make_account(engine, "acme"), make_account(engine, "other")
    first = MeterUsageRow("cus_a", "mtr_calls", PERIOD[0], PERIOD[1], 120.0)
    with engine.begin() as conn:
        stored.save_meter_usage(conn, account.id or 0, [first])
        stored.save_meter_usage(conn, account.id or 0, [])  # nothing to write is not an error
    again = first._replace(end_time=PERIOD[1] + 1, aggregated_value=80.5)
    earlier = MeterUsageRow("cus_a", "mtr_calls", PERIOD[0] - 86_400 * 31, PERIOD[0], 300.0)
    with engine.begin() as conn:
        # a rerun rewrites the period; a period given twice in one call keeps the last value
        stored.save_meter_usage(conn, account.id or 0, [first, earlier, again])
    with engine.connect() as conn:
        rows = sorted(stored.meter_usage(conn, account.id or 0), key=lambda r: r.start_time)
        theirs = stored.meter_usage(conn, other.id or 0)
    assert rows == [earlier, again] and theirs == []


def test_meter_usage_of_a_batch_on_the_accounts_meters(engine: Engine) -> None:
    account, other = make_account(engine, "acme"), make_account(engine, "other")
    calls = MeterUsageRow("cus_a", "mtr_calls", PERIOD[0], PERIOD[1], 120.0)
    rows = [calls, calls._replace(meter_id="mtr_bytes"), calls._replace(customer_id="cus_b")]
    with engine.begin() as conn:
        stored.save_meter_usage(conn, account.id or 0, rows)
        stored.save_meter_usage(conn, other.id or 0, [calls._replace(meter_id="mtr_theirs")])
    with engine.connect() as conn:
        meters = stored.usage_meters(conn, account.id or 0)
        batch = stored.meter_usage(conn, account.id or 0, ["cus_a"], meters)
        one_meter = stored.meter_usage(conn, account.id or 0, ["cus_a", "cus_b"], ["mtr_calls"])
        none = stored.meter_usage(conn, account.id or 0, ["cus_a"], [])
    assert meters == ["mtr_bytes", "mtr_calls"]
    assert sorted(batch) == sorted(rows[:2])
    assert sorted(one_meter) == sorted([rows[0], rows[2]]) and none == []


def test_a_batchs_invoices_are_looked_up_by_customer_on_sqlite(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a range over the customer index (every invoice of the account, read again for each batch), nor
    every invoice of the batch's customers: the partial index of those that may have failed, by customer."""
    account = make_account(sqlite_engine)
    store(sqlite_engine, account, _world())
    sql = capture_sql(monkeypatch, stored)
    with sqlite_engine.connect() as conn:
        found = stored.failable_invoices(
            conn, account.id or 0, ("open", "paid"), customer_ids=["cus_a", "cus_b"]
        )
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql[0]))
    assert sorted(i.id for i in found) == ["in_open"]
    assert "customer_id=?" in plan and "customer_id>?" not in plan
    assert "USING INDEX ix_stripe_invoice_failable" in plan


def test_the_migrated_failable_index_is_the_models(sqlite_engine: Engine) -> None:
    """The migration (frozen, so a copy) and the model name the same invoices."""
    with sqlite_engine.connect() as conn:
        (sql,) = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'ix_stripe_invoice_failable'"
        ).one()
    assert sql.endswith(f"WHERE {models.FAILABLE_INVOICE}")


def test_a_batchs_failable_invoices_can_be_read_through_the_partial_index_on_postgresql(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL uses a partial index only where the query's terms imply the index's: the migrated index and
    the repository's query must name the same invoices (a handful of rows here, so the planner is told not
    to scan the table)."""
    account = make_account(pg_engine)
    store(pg_engine, account, _world())
    sql = capture_sql(monkeypatch, stored)
    with pg_engine.connect() as conn:
        stored.failable_invoices(conn, account.id or 0, ("open", "paid"), customer_ids=["cus_a", "cus_b"])
        conn.exec_driver_sql("SET enable_seqscan = off")
        plan = " ".join(str(r[0]) for r in conn.exec_driver_sql("EXPLAIN " + sql[0]))
    assert "ix_stripe_invoice_failable" in plan


def test_invoice_transitions_are_read_for_a_batch_of_customers(engine: Engine) -> None:
    account = make_account(engine)
    line = b.line("il_w", "in_written_off", 9_000, PERIOD)
    written_off = b.invoice("in_written_off", "cus_b", [line], status="uncollectible", created=PERIOD[0])
    written_off["status_transitions"] = {
        "finalized_at": PERIOD[0] + 3600,
        "paid_at": None,
        "voided_at": None,
        "marked_uncollectible_at": PERIOD[0] + 20 * 86400,
    }
    store(engine, account, [*_world(), b.customer("cus_b", "B"), written_off])
    with engine.connect() as conn:
        only_b = stored.failable_invoices(
            conn, account.id or 0, ("uncollectible", "open", "paid"), customer_ids=["cus_b"]
        )
    assert only_b == [
        InvoiceRow(
            "in_written_off",
            "cus_b",
            "uncollectible",
            PERIOD[0],
            1,
            9_000,
            "usd",
            PERIOD[0] + 20 * 86400,
            PERIOD[0] + 3600,
        )
    ]
