"""Builders of Stripe-shaped objects (plain dicts, as the API sends them).

They produce the current API shapes (`parent`, `pricing` on invoice lines; item-level periods on
subscriptions) and, with `legacy=True`, the older ones (`type`, `price`/`plan`, `proration`, `subscription`),
so tests, the sample company and the local Stripe-compatible server all speak both. Field sets follow
Stripe's own examples (tests/fixtures/stripe/fixtures3.json); fields we never read are left out rather than
invented."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

# The builders below take one keyword argument per Stripe field a test may set, so they exceed the
# argument limit on purpose: grouping them would hide the object's shape the tests are written against.


def embedded_list(shown: list[Obj], total: int, url: str) -> Obj:
    """A list embedded in its parent (a subscription's items, an invoice's lines): `shown` of `total` objects.

    The rest are fetched from `url`; `has_more` says whether there are any.
    """
    return {"object": "list", "data": shown, "has_more": len(shown) < total, "total_count": total, "url": url}


def account(id: str = "acct_test", name: str = "Acme Inc.", default_currency: str = "usd") -> Obj:
    return {
        "id": id,
        "object": "account",
        "business_profile": {"name": name},
        "settings": {"dashboard": {"display_name": name}},
        "default_currency": default_currency,
        "country": "US",
        "email": None,
    }


def customer(
    id: str,
    name: str | None = None,
    created: int = 0,
    email: str | None = None,
    currency: str | None = "usd",
    deleted: bool = False,
) -> Obj:
    if deleted:
        return {"id": id, "object": "customer", "deleted": True}
    return {
        "id": id,
        "object": "customer",
        "name": name,
        "email": email,
        "created": created,
        "currency": currency,
        "delinquent": False,
        "livemode": False,
        "metadata": {},
        "balance": 0,
        "test_clock": None,
    }


def product(id: str, name: str, created: int = 0, active: bool = True) -> Obj:
    return {
        "id": id,
        "object": "product",
        "name": name,
        "active": active,
        "created": created,
        "metadata": {},
        "livemode": False,
    }


def price(  # noqa: PLR0913 - one keyword per Stripe field
    id: str,
    product: str,
    unit_amount: int | None,
    currency: str = "usd",
    interval: str | None = "month",
    interval_count: int = 1,
    usage_type: str = "licensed",
    meter: str | None = None,
    created: int = 0,
    active: bool = True,
    nickname: str | None = None,
    tax_behavior: str = "unspecified",
) -> Obj:
    recurring = None
    if interval is not None:
        recurring = {
            "interval": interval,
            "interval_count": interval_count,
            "meter": meter,
            "usage_type": usage_type,
            "trial_period_days": None,
        }
    return {
        "id": id,
        "object": "price",
        "active": active,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": nickname,
        "product": product,
        "recurring": recurring,
        "tax_behavior": tax_behavior,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": None if unit_amount is None else str(unit_amount),
    }


def subscription_item(
    id: str,
    subscription: str,
    price_obj: Obj,
    quantity: int | None = 1,
    period: tuple[int, int] = (0, 0),
    created: int = 0,
) -> Obj:
    return {
        "id": id,
        "object": "subscription_item",
        "created": created,
        "discounts": [],
        "metadata": {},
        "price": price_obj,
        "quantity": quantity,
        "subscription": subscription,
        "tax_rates": [],
        "current_period_start": period[0],
        "current_period_end": period[1],
    }


def subscription(  # noqa: PLR0913 - one keyword per Stripe field
    id: str,
    customer: str,
    items: list[Obj],
    status: str = "active",
    created: int = 0,
    currency: str = "usd",
    cancel_at_period_end: bool = False,
    cancel_at: int | None = None,
    canceled_at: int | None = None,
    ended_at: int | None = None,
    trial_end: int | None = None,
    trial_start: int | None = None,
    legacy: bool = False,
) -> Obj:
    sub: Obj = {
        "id": id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "created": created,
        "start_date": created,
        "currency": currency,
        "cancel_at": cancel_at,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": canceled_at,
        "ended_at": ended_at,
        "trial_start": trial_start,
        "trial_end": trial_end,
        "discounts": [],
        "livemode": False,
        "metadata": {},
        "items": embedded_list(items, len(items), f"/v1/subscription_items?subscription={id}"),
    }
    if legacy and items:
        sub["current_period_start"] = items[0]["current_period_start"]
        sub["current_period_end"] = items[0]["current_period_end"]
    return sub


def line(  # noqa: PLR0913 - one keyword per Stripe field
    id: str,
    invoice: str,
    amount: int,
    period: tuple[int, int],
    currency: str = "usd",
    price_obj: Obj | None = None,
    subscription: str | None = None,
    subscription_item: str | None = None,
    proration: bool = False,
    quantity: int | None = 1,
    discounts: list[int] | None = None,
    taxes: list[tuple[int, str]] | None = None,
    description: str | None = None,
    invoice_item: str | None = None,
    legacy: bool = False,
) -> Obj:
    """An invoice line. `taxes` holds (amount, "inclusive"|"exclusive"); `discounts` holds amounts.

    A line with a `subscription_item` is a subscription line; otherwise it comes from an invoice item.
    """
    discount_amounts = [{"amount": a, "discount": f"di_{id}_{i}"} for i, a in enumerate(discounts or [])]
    base: Obj = {
        "id": id,
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": discount_amounts,
        "discountable": True,
        "discounts": [d["discount"] for d in discount_amounts],
        "invoice": invoice,
        "livemode": False,
        "metadata": {},
        "period": {"start": period[0], "end": period[1]},
        "quantity": quantity,
    }
    tax_list = [
        {
            "amount": a,
            "tax_behavior": behavior,
            "taxability_reason": "standard_rated",
            "taxable_amount": amount,
            "type": "tax_rate_details",
            "tax_rate_details": {"tax_rate": f"txr_{behavior}"},
        }
        for a, behavior in (taxes or [])
    ]
    if legacy:
        base.update(
            {
                "type": "subscription" if subscription_item else "invoiceitem",
                "price": price_obj,
                "plan": None,
                "proration": proration,
                "subscription": subscription,
                "subscription_item": subscription_item,
                "invoice_item": None if subscription_item else (invoice_item or f"ii_{id}"),
                "tax_amounts": [
                    {"amount": a, "inclusive": behavior == "inclusive", "tax_rate": f"txr_{behavior}"}
                    for a, behavior in (taxes or [])
                ],
            }
        )
        return base
    if subscription_item:
        parent: Obj = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": None,
                "subscription": subscription,
                "subscription_item": subscription_item,
            },
        }
    else:
        parent = {
            "type": "invoice_item_details",
            "subscription_item_details": None,
            "invoice_item_details": {
                "invoice_item": invoice_item or f"ii_{id}",
                "proration": proration,
                "proration_details": None,
                "subscription": subscription,
            },
        }
    base.update(
        {
            "parent": parent,
            "pricing": {
                "type": "price_details",
                "price_details": None
                if price_obj is None
                else {"price": price_obj["id"], "product": price_obj["product"]},
                "unit_amount_decimal": None if price_obj is None else price_obj.get("unit_amount_decimal"),
            },
            "taxes": tax_list,
            "pretax_credit_amounts": [],
            "subscription": subscription,
        }
    )
    return base


def invoice(  # noqa: PLR0913 - one keyword per Stripe field
    id: str,
    customer: str,
    lines: list[Obj],
    status: str = "paid",
    created: int = 0,
    currency: str = "usd",
    subscription: str | None = None,
    attempt_count: int | None = None,
    period: tuple[int, int] | None = None,
    billing_reason: str = "subscription_cycle",
    next_payment_attempt: int | None = None,
    embedded_lines: int | None = None,
    legacy: bool = False,
) -> Obj:
    """An invoice. With `embedded_lines`, only that many lines are embedded (`has_more`), as Stripe does.

    The local server keeps every line for /v1/invoices/{id}/lines and embeds its own number when it serves.
    """
    shown = lines if embedded_lines is None else lines[:embedded_lines]
    total = sum(line_["amount"] for line_ in lines)
    paid = status == "paid"
    start, end = period if period else (created, created)
    inv: Obj = {
        "id": id,
        "object": "invoice",
        "customer": customer,
        "status": status,
        "created": created,
        "currency": currency,
        "billing_reason": billing_reason,
        "attempt_count": (1 if status in ("open", "paid", "uncollectible") else 0)
        if attempt_count is None
        else attempt_count,
        "attempted": status != "draft",
        "amount_due": total,
        "amount_paid": total if paid else 0,
        "amount_remaining": 0 if paid else total,
        "subtotal": total,
        "total": total,
        "period_start": start,
        "period_end": end,
        "next_payment_attempt": next_payment_attempt,
        "livemode": False,
        "metadata": {},
        "lines": embedded_list(shown, len(lines), f"/v1/invoices/{id}/lines"),
    }
    if len(shown) < len(lines):
        inv["_all_lines"] = lines  # taken by StripeWorld.add; never sent
    if legacy:
        inv["subscription"] = subscription
    else:
        inv["parent"] = (
            None
            if subscription is None
            else {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"metadata": {}, "subscription": subscription},
            }
        )
    return inv


def credit_note(
    id: str, invoice: str, customer: str, amount: int, created: int = 0, currency: str = "usd"
) -> Obj:
    return {
        "id": id,
        "object": "credit_note",
        "invoice": invoice,
        "customer": customer,
        "amount": amount,
        "currency": currency,
        "created": created,
        "status": "issued",
        "type": "post_payment",
        "livemode": False,
        "metadata": {},
    }


def event(id: str, type: str, obj: Obj, created: int) -> Obj:
    return {
        "id": id,
        "object": "event",
        "type": type,
        "created": created,
        "api_version": "2026-10-28.endive",
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
    }
