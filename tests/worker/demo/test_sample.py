"""The sample company: deterministic, consistent, and holding every case the metrics must handle."""

from __future__ import annotations

import calendar
import json
import time
from collections import Counter
from datetime import date
from typing import Any

import pytest

from worker.demo.sample import build_sample_world, world_objects
from worker.demo.stripe_server import StripeWorld

END = date(2026, 11, 1)
END_TS = calendar.timegm((2026, 11, 1, 0, 0, 0))
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def world() -> StripeWorld:
    return build_sample_world(seed=7, customers=300, months=24, end=END)


def objects(world: StripeWorld, kind: str) -> list[Obj]:
    return list(world.collections[kind].by_id.values())


def all_lines(world: StripeWorld) -> list[Obj]:
    return [line for lines in world.invoice_lines.values() for line in lines]


def sub_details(line: Obj) -> Obj | None:
    return line["parent"]["subscription_item_details"]


def test_same_seed_gives_the_same_json_and_another_seed_does_not() -> None:
    a = json.dumps(world_objects(build_sample_world(seed=3, customers=80, end=END)), sort_keys=True)
    b = json.dumps(world_objects(build_sample_world(seed=3, customers=80, end=END)), sort_keys=True)
    c = json.dumps(world_objects(build_sample_world(seed=4, customers=80, end=END)), sort_keys=True)
    assert a == b
    assert a != c


def test_nothing_is_created_after_end(world: StripeWorld) -> None:
    for kind, coll in world.collections.items():
        for obj in coll.by_id.values():
            assert (obj.get("created") or 0) <= END_TS, (kind, obj["id"])


def test_every_line_references_an_existing_price_and_product(world: StripeWorld) -> None:
    prices = world.collections["price"].by_id
    products = world.collections["product"].by_id
    for line in all_lines(world):
        details = line["pricing"]["price_details"]
        assert details is not None, line["id"]
        assert details["price"] in prices, line["id"]
        assert details["product"] == prices[details["price"]]["product"]
        assert details["product"] in products


def test_subscriptions_and_items_reference_existing_objects(world: StripeWorld) -> None:
    customers = world.collections["customer"].by_id
    prices = world.collections["price"].by_id
    for sub in objects(world, "subscription"):
        assert sub["customer"] in customers
        for item in sub["items"]["data"]:
            assert item["price"]["id"] in prices
            assert item["current_period_start"] < item["current_period_end"]
    for line in all_lines(world):
        details = sub_details(line)
        if details is not None:
            assert world.get("subscription", details["subscription"]) is not None, line["id"]


def test_invoice_totals_equal_lines_minus_discounts(world: StripeWorld) -> None:
    for inv in objects(world, "invoice"):
        lines = world.invoice_lines[inv["id"]]
        assert inv["lines"]["total_count"] == len(lines)
        assert inv["subtotal"] == sum(line["amount"] for line in lines)
        discounts = sum(d["amount"] for line in lines for d in line["discount_amounts"])
        assert inv["total"] == inv["subtotal"] - discounts
        assert inv["amount_due"] == inv["total"]
        if inv["status"] == "paid":
            assert inv["amount_paid"] == inv["total"] and inv["amount_remaining"] == 0


def test_recurring_periods_sit_on_month_quarter_and_year_boundaries(world: StripeWorld) -> None:
    prices = world.collections["price"].by_id
    seen: Counter[tuple[str, int]] = Counter()
    for line in all_lines(world):
        details = sub_details(line)
        if details is None or details["proration"] or line["amount"] == 0:
            continue
        price = prices[line["pricing"]["price_details"]["price"]]
        recurring = price["recurring"]
        start = time.gmtime(line["period"]["start"])
        stop = time.gmtime(line["period"]["end"])
        assert (start.tm_mday, start.tm_hour, stop.tm_mday, stop.tm_hour) == (1, 0, 1, 0), line["id"]
        months = (stop.tm_year - start.tm_year) * 12 + stop.tm_mon - start.tm_mon
        expected = recurring["interval_count"] * (12 if recurring["interval"] == "year" else 1)
        if recurring["usage_type"] == "metered":
            expected = 1
        assert months == expected, line["id"]
        seen[(recurring["interval"], recurring["interval_count"])] += 1
    assert {("month", 1), ("month", 3), ("year", 1)} <= set(seen)


def test_plans_seats_and_products(world: StripeWorld) -> None:
    names = {p["name"] for p in objects(world, "product")}
    assert {"Starter", "Growth", "Scale", "Enterprise"} <= names
    quantities = {item["quantity"] for sub in objects(world, "subscription") for item in sub["items"]["data"]}
    assert max(q for q in quantities if q is not None) > 10  # seat-based plans


def test_metered_usage_is_billed_in_arrears(world: StripeWorld) -> None:
    prices = world.collections["price"].by_id
    metered = [
        (line, world.get("invoice", line["invoice"]))
        for line in all_lines(world)
        if prices[line["pricing"]["price_details"]["price"]]["recurring"]
        and prices[line["pricing"]["price_details"]["price"]]["recurring"]["usage_type"] == "metered"
    ]
    assert len(metered) > 50
    for line, inv in metered:
        assert inv is not None
        assert line["period"]["end"] == inv["created"]  # billed when the usage period ends


def test_meter_summaries_agree_with_the_billed_usage(world: StripeWorld) -> None:
    invoices = world.collections["invoice"].by_id
    billed = {
        (invoices[line["invoice"]]["customer"], line["period"]["start"], line["period"]["end"]): line[
            "quantity"
        ]
        for line in all_lines(world)
        if line["pricing"]["price_details"]["product"] == "prod_api_calls"
    }
    summaries = world.meter_summaries["mtr_api_calls"]
    assert billed
    assert {
        (s["customer"], s["start_time"], s["end_time"]): s["aggregated_value"] for s in summaries
    } == billed


def test_coupons_including_a_full_discount(world: StripeWorld) -> None:
    discounted = [line for line in all_lines(world) if line["discount_amounts"]]
    assert len(discounted) > 20
    full = [line for line in discounted if line["discount_amounts"][0]["amount"] == line["amount"] > 0]
    assert full, "a 100%-discounted customer"


def test_inclusive_tax_on_eu_customers(world: StripeWorld) -> None:
    eu = {c["id"] for c in objects(world, "customer") if c["address"]["country"] != "US"}
    assert eu
    taxed = [line for line in all_lines(world) if line["taxes"]]
    assert taxed
    invoices = world.collections["invoice"].by_id
    for line in taxed:
        assert invoices[line["invoice"]]["customer"] in eu
        tax = line["taxes"][0]
        assert tax["tax_behavior"] == "inclusive"
        net = line["amount"] - sum(d["amount"] for d in line["discount_amounts"])
        assert abs(tax["amount"]) < abs(net) * 0.2 + 1  # VAT rates here are 19-23% of the net: < 19% of gross


def test_prorated_upgrades_come_in_pairs(world: StripeWorld) -> None:
    upgrades = [inv for inv in objects(world, "invoice") if inv["billing_reason"] == "subscription_update"]
    assert upgrades
    for inv in upgrades:
        lines = world.invoice_lines[inv["id"]]
        assert len(lines) == 2
        assert all(sub_details(line)["proration"] for line in lines)  # type: ignore[index]
        assert lines[0]["amount"] < 0 < lines[1]["amount"]
        assert lines[0]["period"] == lines[1]["period"]


def test_trials_have_zero_invoices_and_some_are_still_running(world: StripeWorld) -> None:
    trials = [s for s in objects(world, "subscription") if s["trial_start"] is not None]
    assert trials
    assert any(s["status"] == "trialing" and s["trial_end"] > END_TS for s in trials)
    zero = [
        inv
        for inv in objects(world, "invoice")
        if inv["total"] == 0 and inv["subtotal"] == 0 and inv["billing_reason"] == "subscription_create"
    ]
    assert len(zero) >= len(trials)


def test_one_time_fees_setup_at_signing_and_a_services_push_in_the_last_month(world: StripeWorld) -> None:
    def services_in(year: int, month: int) -> int:
        lo = calendar.timegm((year, month, 1, 0, 0, 0))
        hi = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
        return sum(
            line["amount"]
            for inv in objects(world, "invoice")
            if lo <= inv["created"] < hi and inv["status"] == "paid"
            for line in world.invoice_lines[inv["id"]]
            if line["pricing"]["price_details"]["product"] == "prod_services"
        )

    customers = world.collections["customer"].by_id
    setups = [
        inv
        for inv in objects(world, "invoice")
        if world.invoice_lines[inv["id"]][0]["pricing"]["price_details"]["product"] == "prod_setup"
    ]
    assert setups
    for inv in setups:  # invoiced when the contract is signed, before the first paying month
        assert inv["created"] == customers[inv["customer"]]["created"]
        assert inv["parent"] is None and all(
            line["parent"]["type"] == "invoice_item_details" for line in world.invoice_lines[inv["id"]]
        )
    history = [services_in(2025 + (m // 12), m % 12 + 1) for m in range(10, 22)]  # 2025-11 .. 2026-10
    assert services_in(2026, 11) > 2 * sum(history) / len(history)


def test_churn_reactivation_and_scheduled_cancellations(world: StripeWorld) -> None:
    subs = objects(world, "subscription")
    canceled = [s for s in subs if s["status"] == "canceled" and s["trial_start"] is None]
    assert canceled and all(s["ended_at"] and s["canceled_at"] <= s["ended_at"] for s in canceled)
    by_customer = Counter(s["customer"] for s in subs)
    assert any(n > 1 for n in by_customer.values()), "a customer who came back on a new subscription"
    scheduled = [s for s in subs if s["cancel_at_period_end"]]
    assert scheduled and all(
        s["status"] in ("active", "past_due") and s["cancel_at"] > END_TS for s in scheduled
    )


def test_failed_payments_leave_open_invoices_and_past_due_subscriptions(world: StripeWorld) -> None:
    failed = [
        inv for inv in objects(world, "invoice") if inv["status"] == "open" and inv["attempt_count"] > 0
    ]
    assert failed
    past_due = {s["id"] for s in objects(world, "subscription") if s["status"] == "past_due"}
    assert past_due == {inv["parent"]["subscription_details"]["subscription"] for inv in failed}


def test_some_usage_declines_by_more_than_a_quarter(world: StripeWorld) -> None:
    prices = world.collections["price"].by_id
    usage: dict[str, list[tuple[int, int]]] = {}
    for line in all_lines(world):
        price = prices[line["pricing"]["price_details"]["price"]]
        if price["recurring"] and price["recurring"]["usage_type"] == "metered":
            item = sub_details(line)["subscription_item"]  # type: ignore[index]
            usage.setdefault(item, []).append((line["period"]["start"], line["quantity"]))
    declining = 0
    for points in usage.values():
        points.sort()
        if len(points) >= 4 and points[-1][0] == calendar.timegm((2026, 10, 1, 0, 0, 0)):
            before = sum(q for _, q in points[-4:-1]) / 3
            declining += points[-1][1] <= 0.75 * before
    assert declining >= 1


def test_invoices_with_more_lines_than_stripe_embeds(world: StripeWorld) -> None:
    long = [inv for inv in objects(world, "invoice") if inv["lines"]["total_count"] > 10]
    assert len(long) >= 2
    assert any(inv["parent"] is not None for inv in long)  # recurring lines beyond the embedded ten


def test_void_draft_uncollectible_invoices_and_credit_notes(world: StripeWorld) -> None:
    statuses = Counter(inv["status"] for inv in objects(world, "invoice"))
    assert statuses["void"] and statuses["draft"] and statuses["paid"] > 1000
    notes = objects(world, "credit_note")
    assert notes
    for note in notes:
        inv = world.get("invoice", note["invoice"])
        assert inv is not None and 0 < note["amount"] <= inv["total"] and note["customer"] == inv["customer"]


def test_events_cover_the_last_thirty_days_in_order(world: StripeWorld) -> None:
    events = sorted(objects(world, "event"), key=lambda e: e["id"])
    assert events
    assert all(END_TS - 30 * 86400 <= e["created"] <= END_TS for e in events)
    assert [e["created"] for e in events] == sorted(e["created"] for e in events)
    types = {e["type"] for e in events}
    assert {"invoice.paid", "invoice.payment_failed", "customer.subscription.updated"} <= types
    for e in events:
        assert world.get(e["data"]["object"]["object"], e["data"]["object"]["id"]) is not None


def test_three_thousand_customers_in_a_few_seconds() -> None:
    started = time.process_time()  # CPU time: the machine is shared, wall time is not ours alone
    world = build_sample_world(seed=1, customers=3000, months=24, end=END)
    elapsed = time.process_time() - started
    assert len(world.collections["customer"].by_id) == 3000
    assert elapsed < 8, f"{elapsed:.1f}s"


def test_served_through_the_real_sdk(world: StripeWorld) -> None:
    from worker.demo.stripe_server import FakeStripe

    stripe = pytest.importorskip("stripe")
    long_id = next(inv["id"] for inv in objects(world, "invoice") if inv["lines"]["total_count"] > 10)
    with FakeStripe(world) as server:
        client = stripe.StripeClient("sk_test_123", base_addresses={"api": server.url})
        lines = list(client.v1.invoices.line_items.list(long_id, {"limit": 5}).auto_paging_iter())
        assert len(lines) == len(world.invoice_lines[long_id])
        first = client.v1.invoices.retrieve(long_id)
        assert first.lines.has_more
