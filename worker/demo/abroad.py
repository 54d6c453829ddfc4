"""A few of the sample company's customers billed in euros and pounds, so the demo converts with the ECB's
reference rates (docs/rates.md) and its report names that source.

Applied to the generated world as a last pass, so the rest of the sample need not know: the chosen customers'
invoices, lines, credit notes and subscriptions take the currency, and the prices they use get a copy in it
(`price_growth_1m_eur`) at the same figures (a 25.00 seat is 25.00 EUR). It reads only the objects still held
as dicts: all of them, or, when the sample packs as it goes, the last customer's. EU-addressed customers with
a number divisible by 3 pay in EUR (their VAT is unchanged); every 29th US customer (from the 5th) moves to
the UK and pays in GBP. Which customers depends on their number and address only, not on the generator's
random draws.
"""

from __future__ import annotations

from typing import Any

from worker.demo.stripe_server import StripeWorld

Obj = dict[str, Any]
EU = frozenset({"DE", "FR", "NL", "IE", "ES"})


def abroad_currencies(world: StripeWorld) -> dict[str, str]:
    """customer id -> the currency they are billed in, for the customers not billed in USD."""
    chosen: dict[str, str] = {}
    for cid, customer in world.collections["customer"].live.items():
        number = int(cid.rsplit("_", 1)[1])
        country = (customer.get("address") or {}).get("country")
        if country in EU and number % 3 == 0:
            chosen[cid] = "eur"
        elif country == "US" and number % 29 == 5:
            chosen[cid] = "gbp"
            customer["address"] = {**customer["address"], "country": "GB"}
    return chosen


def bill_abroad(world: StripeWorld) -> dict[str, str]:
    """Bills the chosen customers in their currency (before the events are made from the objects)."""
    chosen = abroad_currencies(world)
    prices = _PriceCopies(world)
    for customer_id, currency in chosen.items():
        world.collections["customer"].live[customer_id]["currency"] = currency
    for sub in world.collections["subscription"].live.values():
        sub_currency = chosen.get(sub["customer"])
        if sub_currency is not None:
            sub["currency"] = sub_currency
            for item in sub["items"]["data"]:
                item["price"] = prices.copy(item["price"]["id"], sub_currency)
    invoice_currency: dict[str, str] = {}
    for inv in world.collections["invoice"].live.values():
        inv_currency = chosen.get(inv["customer"])
        if inv_currency is not None:
            inv["currency"] = inv_currency
            invoice_currency[inv["id"]] = inv_currency
            for line in [*inv["lines"]["data"], *world.invoice_lines.get(inv["id"], [])]:
                _bill_line(line, inv_currency, prices)
    for note in world.collections["credit_note"].live.values():
        if note.get("invoice") in invoice_currency:
            note["currency"] = invoice_currency[note["invoice"]]
    return chosen


def _bill_line(line: Obj, currency: str, prices: _PriceCopies) -> None:
    line["currency"] = currency
    details = (line.get("pricing") or {}).get("price_details") or {}
    if isinstance(details.get("price"), str):
        details["price"] = prices.copy(details["price"], currency)["id"]
    if isinstance(line.get("price"), dict):  # older API versions embed the price
        line["price"] = prices.copy(line["price"]["id"], currency)


class _PriceCopies:
    """Each USD price once more in another currency, added to the world the first time it is asked for."""

    def __init__(self, world: StripeWorld) -> None:
        self.world = world

    def copy(self, price_id: str, currency: str) -> Obj:
        if price_id.endswith(f"_{currency}"):  # a line seen twice (embedded and in the full list)
            price_id = price_id[: -len(currency) - 1]
        copy_id = f"{price_id}_{currency}"
        existing = self.world.get("price", copy_id)
        if existing is not None:
            return existing
        original = self.world.get("price", price_id)
        assert original is not None, f"the sample uses price {price_id} without storing it"
        return self.world.add({**original, "id": copy_id, "currency": currency})
