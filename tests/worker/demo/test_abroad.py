"""The sample's customers billed in EUR and GBP: a few of them, each billed wholly in its currency, on prices
that exist in that currency, so the demo converts them with the ECB's rates."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from worker.demo.abroad import EU
from worker.demo.sample import build_sample_world
from worker.demo.stripe_server import StripeWorld


@pytest.fixture(scope="module")
def world() -> StripeWorld:
    return build_sample_world(seed=7, customers=300, months=24, end=date(2026, 11, 1))


def _currency_of_customers(world: StripeWorld) -> dict[str, str]:
    return {cid: c.get("currency") or "usd" for cid, c in world.collections["customer"].by_id.items()}


def test_a_few_customers_pay_in_eur_and_gbp(world: StripeWorld) -> None:
    customers = world.collections["customer"].by_id
    currency = _currency_of_customers(world)
    counts = Counter(currency.values())
    assert 5 <= counts["eur"] <= 30 and 5 <= counts["gbp"] <= 30 and counts["usd"] >= 240
    for cid, cur in currency.items():
        number, country = int(cid.rsplit("_", 1)[1]), customers[cid]["address"]["country"]
        if cur == "eur":
            assert country in EU and number % 3 == 0
        elif cur == "gbp":
            assert country == "GB" and number % 29 == 5


def test_everything_a_foreign_customer_is_billed_is_in_their_currency(world: StripeWorld) -> None:
    currency = _currency_of_customers(world)
    prices = world.collections["price"].by_id
    invoices = world.collections["invoice"].by_id
    for inv in invoices.values():
        expected = currency[inv["customer"]]
        assert inv["currency"] == expected, inv["id"]
        for line in world.invoice_lines[inv["id"]]:
            assert line["currency"] == expected, line["id"]
            assert prices[line["pricing"]["price_details"]["price"]]["currency"] == expected, line["id"]
    for sub in world.collections["subscription"].by_id.values():
        expected = currency[sub["customer"]]
        assert sub["currency"] == expected
        assert all(item["price"]["currency"] == expected for item in sub["items"]["data"]), sub["id"]
    for note in world.collections["credit_note"].by_id.values():
        assert note["currency"] == invoices[note["invoice"]]["currency"]


def test_prices_are_copied_at_the_same_figures(world: StripeWorld) -> None:
    prices = world.collections["price"].by_id
    copies = [p for p in prices.values() if p["currency"] != "usd"]
    assert copies and all(p["id"].endswith("_" + p["currency"]) for p in copies)
    for copy in copies:
        original = prices[copy["id"].rsplit("_", 1)[0]]
        assert {**copy, "id": original["id"], "currency": "usd"} == original
