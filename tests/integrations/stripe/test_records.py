"""Parsing Stripe's own example objects and both API shapes into the columns others classify from."""

from __future__ import annotations

import json
from typing import Any

import pytest

from integrations.stripe.records import (
    RecordError,
    parse_credit_note,
    parse_customer,
    parse_event,
    parse_invoice,
    parse_invoiceitem,
    parse_line,
    parse_price,
    parse_product,
    parse_subscription,
    parse_subscription_item,
)
from tests.support import stripe_fixtures
from worker.demo import builders as b

FIXTURES = json.loads(stripe_fixtures().read_text())["resources"]


def fixture(name: str) -> dict[str, Any]:
    return json.loads(json.dumps(FIXTURES[name]))


def test_stripe_example_customer_product_price_credit_note() -> None:
    cus = parse_customer(fixture("customer"))
    assert (cus["id"], cus["currency"], cus["created"], cus["deleted"]) == (
        "cus_QXg1o8vcGmoR32",
        "usd",
        1234567890,
        False,
    )
    deleted = parse_customer(fixture("deleted_customer"))
    assert (deleted["id"], deleted["deleted"]) == ("cus_QXg1o8vcGmoR32", True)
    assert "name" not in deleted and "created" not in deleted  # a stored row keeps what it knew
    prod = parse_product(fixture("product"))
    assert (prod["name"], prod["active"]) == ("T-shirt", True)
    price = parse_price(fixture("price"))
    assert (
        price["product_id"],
        price["unit_amount"],
        price["type"],
        price["interval"],
        price["interval_count"],
        price["usage_type"],
    ) == ("prod_QXg1hqf4jFNsqG", 2000, "recurring", "month", 1, "licensed")
    note = parse_credit_note(fixture("credit_note"))
    assert (note["amount"], note["invoice_id"], note["customer_id"]) == (
        1690,
        "in_1Pgc75B7WZ01zgkWYv4iMwt7",
        "cus_QXg1o8vcGmoR32",
    )


def test_stripe_example_subscription_takes_periods_from_items() -> None:
    raw = fixture("subscription")
    row, items = parse_subscription(raw)
    item_starts = [i["current_period_start"] for i in raw["items"]["data"]]
    assert row["current_period_start"] == min(item_starts)
    assert row["customer_id"] == raw["customer"] and row["status"] == raw["status"]
    assert [i["id"] for i in items] == [i["id"] for i in raw["items"]["data"]]
    assert all(
        i["subscription_id"] == raw["id"] and i["price_id"] == "price_1PgafmB7WZ01zgkW6dKueIc5" for i in items
    )
    item = parse_subscription_item(fixture("subscription_item"))
    assert (item["subscription_id"], item["quantity"]) == ("sub_1Pgc6xB7WZ01zgkWJMvZp5ja", 1)


def test_stripe_example_invoice_and_line_item() -> None:
    raw = fixture("invoice")
    row, lines, bad = parse_invoice(raw)
    assert bad == []
    assert (row["customer_id"], row["status"], row["amount_due"]) == (raw["customer"], raw["status"], 1000)
    assert "data" not in row["raw"]["lines"]  # lines are kept on their own rows
    assert [ln["id"] for ln in lines] == [ln["id"] for ln in raw["lines"]["data"]]
    assert all(ln["customer_id"] == raw["customer"] and ln["invoice_id"] == raw["id"] for ln in lines)
    line = parse_line(fixture("line_item"))
    # Stripe's example: parent.type says invoice_item_details, whose proration is true and subscription null
    assert (line["parent_type"], line["legacy_type"], line["proration"], line["subscription_id"]) == (
        "invoice_item_details",
        None,
        True,
        None,
    )
    assert (line["amount"], line["period_start"], line["period_end"]) == (1000, 1721954054, 1721954054)


def test_stripe_example_event_and_invoiceitem() -> None:
    event = fixture("event")  # a plan.created event: plans are stored as prices
    assert parse_event(event) == (event["id"], "prices", event["data"]["object"]["id"])
    item = parse_invoiceitem(fixture("invoiceitem"))
    assert (item["amount"], item["subscription_id"], item["invoice_id"]) == (1000, "subscription", None)
    assert parse_event(b.event("evt_1", "invoiceitem.created", fixture("invoiceitem"), 1)) is None
    assert parse_event(b.event("evt_2", "charge.succeeded", {"id": "ch_1", "object": "charge"}, 1)) is None


PRICE = b.price("price_a", "prod_a", 1500, interval="year")


@pytest.mark.parametrize("legacy", [False, True])
def test_both_shapes_give_the_same_line_columns(legacy: bool) -> None:
    line = b.line(
        "il_1",
        "in_1",
        1500,
        (100, 200),
        price_obj=PRICE,
        subscription="sub_1",
        subscription_item="si_1",
        proration=True,
        quantity=3,
        discounts=[100, 50],
        taxes=[(70, "inclusive"), (30, "exclusive")],
        legacy=legacy,
    )
    row = parse_line(line, customer_id="cus_1")
    expected = {
        "invoice_id": "in_1",
        "customer_id": "cus_1",
        "subscription_id": "sub_1",
        "subscription_item_id": "si_1",
        "price_id": "price_a",
        "product_id": "prod_a",
        "currency": "usd",
        "amount": 1500,
        "discount_total": 150,
        "inclusive_tax": 70,
        "quantity": 3,
        "period_start": 100,
        "period_end": 200,
        "proration": True,
    }
    assert {k: row[k] for k in expected} == expected
    assert (row["parent_type"], row["legacy_type"]) == (
        (None, "subscription") if legacy else ("subscription_item_details", None)
    )


@pytest.mark.parametrize("legacy", [False, True])
def test_invoice_item_line_and_invoice_subscription_in_both_shapes(legacy: bool) -> None:
    line = b.line("il_2", "in_2", 700, (1, 2), price_obj=PRICE, subscription="sub_9", legacy=legacy)
    row = parse_line(line)
    assert (row["parent_type"], row["legacy_type"]) == (
        (None, "invoiceitem") if legacy else ("invoice_item_details", None)
    )
    assert (row["subscription_id"], row["proration"], row["price_id"]) == ("sub_9", False, "price_a")
    inv, lines, _ = parse_invoice(b.invoice("in_2", "cus_2", [line], subscription="sub_9", legacy=legacy))
    assert inv["subscription_id"] == "sub_9" and lines[0]["customer_id"] == "cus_2"


def test_legacy_subscription_periods_and_plan_objects() -> None:
    item = b.subscription_item("si_1", "sub_1", PRICE, period=(10, 20))
    row, _ = parse_subscription(b.subscription("sub_1", "cus_1", [item], legacy=True))
    assert (row["current_period_start"], row["current_period_end"]) == (10, 20)
    plan = {
        "id": "plan_1",
        "object": "plan",
        "amount": 900,
        "currency": "EUR",
        "interval": "month",
        "interval_count": 3,
        "product": "prod_a",
        "usage_type": "licensed",
        "active": False,
    }
    parsed = parse_price(plan)
    assert (parsed["unit_amount"], parsed["currency"], parsed["interval_count"], parsed["active"]) == (
        900,
        "eur",
        3,
        False,
    )


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"object": "customer", "created": 1}, "missing field 'id'"),
        ({"id": "cus_x", "object": "customer"}, "missing field 'created'"),
        ({"id": "cus_x", "object": "customer", "created": "yesterday"}, "should be an integer"),
        ("not an object", "expected a JSON object"),
    ],
)
def test_bad_customer_is_an_error_naming_the_object(obj: Any, message: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_customer(obj)
    assert message in str(info.value)
    if isinstance(obj, dict) and "id" in obj:
        assert info.value.object_id == "cus_x" and "cus_x" in str(info.value)


def test_a_bad_line_is_reported_and_the_invoice_keeps_its_good_lines() -> None:
    good = b.line("il_ok", "in_1", 100, (1, 2))
    broken = b.line("il_bad", "in_1", 100, (1, 2))
    invoice = b.invoice("in_1", "cus_1", [good, broken])
    broken["amount"] = "100"
    inv, lines, bad = parse_invoice(invoice)
    assert [ln["id"] for ln in lines] == ["il_ok"]
    assert [(e.kind, e.object_id) for e in bad] == [("line_item", "il_bad")]
    assert inv["id"] == "in_1"
