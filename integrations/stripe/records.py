"""Stripe JSON -> row values for integrations/stripe/models.py, for the current and the older API shapes.

Accounts, pinned API versions and test servers answer in different shapes (docs/stripe.md):
invoice lines carry `parent`/`pricing` since 2025-03-31.basil and `type`/`price`/`plan`/`proration` before;
invoices carry `parent.subscription_details.subscription` or `subscription`; subscription periods live on
items or on the subscription. Each parser returns plain column dicts (no account_id) and raises `RecordError`
naming the object when a field we rely on is missing or of the wrong type, so one bad object is skipped and
listed, never stored half."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
Row = dict[str, Any]
INSERT_ONLY = "_insert_only"  # row key: columns written when the row is new, left alone when it exists


class RecordError(ValueError):
    """An object we cannot parse; `object_id` and `kind` say which."""

    def __init__(self, kind: str, object_id: str, message: str) -> None:
        super().__init__(f"{kind} {object_id}: {message}")
        self.kind = kind
        self.object_id = object_id
        self.reason = message


class _Reader:
    """Typed field access that turns a wrong or missing field into a RecordError about this object."""

    def __init__(self, kind: str, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise RecordError(kind, "?", f"expected a JSON object, got {type(obj).__name__}")
        self.kind = kind
        self.obj = obj
        oid = obj.get("id")
        if not isinstance(oid, str) or not oid:
            raise RecordError(kind, "?", "missing field 'id'")
        self.id = oid

    def fail(self, message: str) -> RecordError:
        return RecordError(self.kind, self.id, message)

    def str_(self, key: str, required: bool = False, src: Obj | None = None) -> str | None:
        value = (self.obj if src is None else src).get(key)
        if type(value) is str:  # the common case first: these run a dozen times per object
            return value
        if value is None:
            if required:
                raise self.fail(f"missing field {key!r}")
            return None
        if isinstance(value, dict) and isinstance(value.get("id"), str):  # an expanded object
            return str(value["id"])
        if not isinstance(value, str):
            raise self.fail(f"field {key!r} should be a string, got {type(value).__name__}")
        return value

    def int_(self, key: str, required: bool = False, src: Obj | None = None) -> int | None:
        value = (self.obj if src is None else src).get(key)
        if type(value) is int:
            return value
        if value is None:
            if required:
                raise self.fail(f"missing field {key!r}")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"field {key!r} should be an integer, got {type(value).__name__}")
        return value

    def bool_(self, key: str, default: bool = False, src: Obj | None = None) -> bool:
        value = (self.obj if src is None else src).get(key)
        if value is True or value is False:
            return value
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"field {key!r} should be a boolean, got {type(value).__name__}")
        return value

    def dict_(self, key: str, src: Obj | None = None) -> Obj:
        value = (self.obj if src is None else src).get(key)
        if type(value) is dict:
            return value
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"field {key!r} should be an object, got {type(value).__name__}")
        return value

    def list_(self, key: str, src: Obj | None = None) -> list[Any]:
        value = (self.obj if src is None else src).get(key)
        if type(value) is list:
            return value
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(f"field {key!r} should be a list, got {type(value).__name__}")
        return value


def _currency(r: _Reader, src: Obj | None = None, required: bool = False) -> str | None:
    value = r.str_("currency", required, src)
    return value.lower() if value else None


def parse_customer(obj: Any) -> Row:
    """A deleted customer (`deleted: true`) is id + marker only: a stored row keeps its columns and raw."""
    r = _Reader("customer", obj)
    if r.bool_("deleted"):
        return {"id": r.id, "deleted": True, "raw": obj, INSERT_ONLY: ("raw",)}
    return {
        "id": r.id,
        "name": r.str_("name"),
        "email": r.str_("email"),
        "currency": _currency(r),
        "created": r.int_("created", True),
        "deleted": False,  # Stripe returned it whole: it exists (again, if we had marked it gone)
        "deleted_at": None,
        "raw": obj,
    }


def parse_product(obj: Any) -> Row:
    r = _Reader("product", obj)
    return {
        "id": r.id,
        "name": r.str_("name"),
        "active": r.bool_("active", True),
        "created": r.int_("created"),
        "raw": obj,
    }


def parse_price(obj: Any) -> Row:
    """Prices and the older `plan` objects (which carry `amount` and the interval at top level)."""
    r = _Reader("price", obj)
    if obj.get("object") == "plan":
        return {
            "id": r.id,
            "product_id": r.str_("product"),
            "currency": _currency(r),
            "unit_amount": r.int_("amount"),
            "type": "recurring",
            "interval": r.str_("interval"),
            "interval_count": r.int_("interval_count"),
            "usage_type": r.str_("usage_type"),
            "meter_id": r.str_("meter"),
            "active": r.bool_("active", True),
            "created": r.int_("created"),
            "raw": obj,
        }
    recurring = r.dict_("recurring")
    return {
        "id": r.id,
        "product_id": r.str_("product"),
        "currency": _currency(r),
        "unit_amount": r.int_("unit_amount"),
        "type": r.str_("type") or ("recurring" if recurring else "one_time"),
        "interval": r.str_("interval", src=recurring),
        "interval_count": r.int_("interval_count", src=recurring),
        "usage_type": r.str_("usage_type", src=recurring),
        "meter_id": r.str_("meter", src=recurring),
        "active": r.bool_("active", True),
        "created": r.int_("created"),
        "raw": obj,
    }


def parse_subscription_item(obj: Any, subscription_id: str | None = None) -> Row:
    r = _Reader("subscription_item", obj)
    price = obj.get("price") or obj.get("plan")
    price_id = price.get("id") if isinstance(price, dict) else price
    if price_id is not None and not isinstance(price_id, str):
        raise r.fail("field 'price' should be a price object or id")
    sub = subscription_id or r.str_("subscription", True)
    return {
        "id": r.id,
        "subscription_id": sub,
        "price_id": price_id,
        "quantity": r.int_("quantity"),
        "current_period_start": r.int_("current_period_start"),
        "current_period_end": r.int_("current_period_end"),
        "raw": obj,
    }


def parse_subscription(obj: Any) -> tuple[Row, list[Row]]:
    """The subscription and its current items; periods from the items (current shape) or the top (older)."""
    r = _Reader("subscription", obj)
    items_list = r.dict_("items")
    items = [parse_subscription_item(item, r.id) for item in r.list_("data", src=items_list)]
    start = r.int_("current_period_start")
    end = r.int_("current_period_end")
    if start is None and items:
        starts = [i["current_period_start"] for i in items if i["current_period_start"] is not None]
        ends = [i["current_period_end"] for i in items if i["current_period_end"] is not None]
        start = min(starts) if starts else None
        end = max(ends) if ends else None
    raw = dict(obj)
    row = {
        "id": r.id,
        "customer_id": r.str_("customer", True),
        "status": r.str_("status", True),
        "currency": _currency(r),
        "created": r.int_("created"),
        "start_date": r.int_("start_date"),
        "current_period_start": start,
        "current_period_end": end,
        "cancel_at": r.int_("cancel_at"),
        "cancel_at_period_end": r.bool_("cancel_at_period_end"),
        "canceled_at": r.int_("canceled_at"),
        "ended_at": r.int_("ended_at"),
        "trial_end": r.int_("trial_end"),
        "deleted": False,  # Stripe returned it: it exists (a full sync marks the ones it no longer lists)
        "deleted_at": None,
        "raw": raw,
    }
    return row, items


def _sum_amounts(r: _Reader, items: list[Any], what: str, keep: Any = None) -> int:
    if not items:
        return 0
    total = 0
    for item in items:
        if (
            not isinstance(item, dict)
            or isinstance(item.get("amount"), bool)
            or not isinstance(item.get("amount"), int)
        ):
            raise r.fail(f"{what} entries need an integer 'amount'")
        if keep is None or keep(item):
            total += item["amount"]
    return total


def _opt_str(value: Any) -> bool:
    return value is None or type(value) is str


def _opt_int(value: Any) -> bool:
    return value is None or type(value) is int


def _fast_sum(items: Any, inclusive: str | None = None) -> int | None:
    """_sum_amounts for well-formed entries; None when anything is unusual (the checked path then decides)."""
    if items is None:
        return 0
    if type(items) is not list:
        return None
    total = 0
    for item in items:
        if type(item) is not dict:
            return None
        amount = item.get("amount")
        if type(amount) is not int:
            return None
        if inclusive is None or item.get("tax_behavior") == inclusive:
            total += amount
    return total


def _fast_parent(parent: Any) -> tuple[str, bool, Any, Any] | None:
    """(type, proration, subscription, subscription item) of a well-formed `parent`, else None."""
    if type(parent) is not dict or not parent:
        return None
    parent_type = parent.get("type")
    if type(parent_type) is not str or not parent_type:
        return None
    details = parent.get(parent_type)
    if type(details) is not dict:
        return None
    proration = details.get("proration")
    if proration is None:
        proration = False
    elif proration is not True and proration is not False:
        return None
    return parent_type, proration, details.get("subscription"), details.get("subscription_item")


def _fast_price(pricing: Any) -> tuple[Any, Any] | None:
    """(price id, product id) of a well-formed `pricing`, else None."""
    if pricing is None:
        return None, None
    if type(pricing) is not dict:
        return None
    details = pricing.get("price_details")
    if details is None:
        return None, None
    if type(details) is not dict:
        return None
    return details.get("price"), details.get("product")


def _parse_line_fast(
    obj: Any, invoice_id: str | None, customer_id: str | None, currency: str | None
) -> Row | None:
    """parse_line for a well-formed line of the current shape (nearly all of them), with plain dict reads.

    It returns exactly what parse_line's checked path returns, or None for anything else (an older shape, an
    expanded object, a missing or mistyped field), which then goes through the checked path and its errors.
    tests/integrations/stripe/test_line_parsers_agree.py checks that on generated Stripe-shaped lines.
    """
    if type(obj) is not dict or not invoice_id:
        return None
    get = obj.get
    oid = get("id")
    amount = get("amount")
    period = get("period")
    if type(oid) is not str or not oid or type(amount) is not int:
        return None
    head = _fast_parent(get("parent"))
    prices = _fast_price(get("pricing"))
    if head is None or prices is None or (period is not None and type(period) is not dict):
        return None
    parent_type, proration, subscription_id, subscription_item_id = head
    price_id, product_id = prices
    own_currency = get("currency")
    quantity = get("quantity")
    description = get("description")
    start = period.get("start") if period else None
    end = period.get("end") if period else None
    strings = (subscription_id, subscription_item_id, price_id, product_id, own_currency, description)
    if not all(map(_opt_str, strings)) or not (_opt_int(quantity) and _opt_int(start) and _opt_int(end)):
        return None
    inclusive = _fast_sum(get("taxes"), "inclusive")
    discount_total = _fast_sum(get("discount_amounts"))
    if inclusive is None or discount_total is None:
        return None
    return {
        "id": oid,
        "invoice_id": invoice_id,
        "customer_id": customer_id,
        "subscription_id": subscription_id,
        "subscription_item_id": subscription_item_id,
        "price_id": price_id,
        "product_id": product_id,
        "currency": (own_currency.lower() if own_currency else None) or currency,
        "amount": amount,
        "discount_total": discount_total,
        "inclusive_tax": inclusive,
        "quantity": quantity,
        "period_start": start,
        "period_end": end,
        "parent_type": parent_type,
        "legacy_type": None,
        "proration": proration,
        "description": description,
        "raw": obj,
    }


def parse_line(
    obj: Any, invoice_id: str | None = None, customer_id: str | None = None, currency: str | None = None
) -> Row:
    """One invoice line in shape-neutral columns (see StripeInvoiceLine)."""
    row = _parse_line_fast(obj, invoice_id, customer_id, currency)
    return row if row is not None else _parse_line_checked(obj, invoice_id, customer_id, currency)


def _parse_line_checked(
    obj: Any, invoice_id: str | None, customer_id: str | None, currency: str | None
) -> Row:
    """Every shape, every field checked: the path that names what is wrong with a line."""
    r = _Reader("line_item", obj)
    amount = r.int_("amount", True)
    period = r.dict_("period")
    parent = r.dict_("parent")
    parent_type = r.str_("type", src=parent) if parent else None
    legacy_type = None if parent else r.str_("type")
    proration = False
    subscription_id: str | None = None
    subscription_item_id: str | None = None
    price_id: str | None = None
    product_id: str | None = None
    if parent:
        details = r.dict_(parent_type, src=parent) if parent_type else {}
        proration = r.bool_("proration", src=details)
        subscription_id = r.str_("subscription", src=details)
        subscription_item_id = r.str_("subscription_item", src=details)
        pricing = r.dict_("pricing")
        price_details = r.dict_("price_details", src=pricing)
        price_id = r.str_("price", src=price_details)
        product_id = r.str_("product", src=price_details)
        inclusive = _sum_amounts(r, r.list_("taxes"), "taxes", lambda t: t.get("tax_behavior") == "inclusive")
    else:
        proration = r.bool_("proration")
        subscription_id = r.str_("subscription")
        subscription_item_id = r.str_("subscription_item")
        price = obj.get("price") or obj.get("plan")
        if isinstance(price, dict):
            price_id = price.get("id")
            product_id = price.get("product") if isinstance(price.get("product"), str) else None
        elif isinstance(price, str):
            price_id = price
        inclusive = _sum_amounts(
            r, r.list_("tax_amounts"), "tax_amounts", lambda t: t.get("inclusive") is True
        )
    invoice = invoice_id or r.str_("invoice", True)
    return {
        "id": r.id,
        "invoice_id": invoice,
        "customer_id": customer_id,
        "subscription_id": subscription_id,
        "subscription_item_id": subscription_item_id,
        "price_id": price_id,
        "product_id": product_id,
        "currency": _currency(r) or currency,
        "amount": amount,
        "discount_total": _sum_amounts(r, r.list_("discount_amounts"), "discount_amounts"),
        "inclusive_tax": inclusive,
        "quantity": r.int_("quantity"),
        "period_start": r.int_("start", src=period),
        "period_end": r.int_("end", src=period),
        "parent_type": parent_type,
        "legacy_type": legacy_type,
        "proration": proration,
        "description": r.str_("description"),
        "raw": obj,
    }


def parse_invoice(obj: Any) -> tuple[Row, list[Row], list[RecordError]]:
    """The invoice, its lines (all of them: the sync fills `lines.data` first) and the lines it had to skip.

    The stored raw invoice leaves out `lines.data` (kept once, on each line row) to halve storage.
    """
    r = _Reader("invoice", obj)
    lines_list = r.dict_("lines")
    parent = r.dict_("parent")
    sub_details = r.dict_("subscription_details", src=parent) if parent else {}
    subscription_id = r.str_("subscription", src=sub_details) if parent else r.str_("subscription")
    customer_id = r.str_("customer", True)
    currency = _currency(r, required=True)
    attempt_count = r.int_("attempt_count")
    raw = dict(obj)
    raw["lines"] = {k: v for k, v in lines_list.items() if k != "data"}
    row = {
        "id": r.id,
        "customer_id": customer_id,
        "subscription_id": subscription_id,
        "status": r.str_("status"),
        "currency": currency,
        "created": r.int_("created", True),
        "period_start": r.int_("period_start"),
        "period_end": r.int_("period_end"),
        "billing_reason": r.str_("billing_reason"),
        "attempt_count": attempt_count or 0,
        "amount_due": r.int_("amount_due"),
        "amount_paid": r.int_("amount_paid"),
        "total": r.int_("total"),
        "next_payment_attempt": r.int_("next_payment_attempt"),
        "lines_total_count": r.int_("total_count", src=lines_list),
        "raw": raw,
    }
    lines: list[Row] = []
    bad: list[RecordError] = []
    for line in r.list_("data", src=lines_list):
        try:
            lines.append(parse_line(line, r.id, customer_id, currency))
        except RecordError as exc:
            bad.append(exc)
    return row, lines, bad


def parse_credit_note(obj: Any) -> Row:
    r = _Reader("credit_note", obj)
    return {
        "id": r.id,
        "invoice_id": r.str_("invoice"),
        "customer_id": r.str_("customer"),
        "currency": _currency(r),
        "amount": r.int_("amount", True),
        "created": r.int_("created"),
        "raw": obj,
    }


# Event object types whose objects we store, mapped to the list path they are re-read from.
EVENT_KINDS: dict[str, str] = {
    "customer": "customers",
    "product": "products",
    "price": "prices",
    "plan": "prices",
    "subscription": "subscriptions",
    "invoice": "invoices",
    "credit_note": "credit_notes",
}


def parse_event(obj: Any) -> tuple[str, str, str | None] | None:
    """(event id, list path to re-read, object id) for events about objects we store; None for the rest.

    An invoice item event points at its invoice (its line changed); a subscription item at its subscription.
    """
    r = _Reader("event", obj)
    data = r.dict_("data")
    target = r.dict_("object", src=data)
    kind = target.get("object")
    if kind == "invoiceitem":
        invoice = target.get("invoice")
        return (r.id, "invoices", invoice) if isinstance(invoice, str) else None
    if kind == "subscription_item":
        sub = target.get("subscription")
        return (r.id, "subscriptions", sub) if isinstance(sub, str) else None
    if kind not in EVENT_KINDS:
        return None
    target_id = target.get("id")
    if not isinstance(target_id, str):
        raise r.fail("data.object has no id")
    return r.id, EVENT_KINDS[kind], target_id


def parse_invoiceitem(obj: Any) -> Row:
    """Invoice items are not stored (their lines are); this reads the fields that tie one to an invoice."""
    r = _Reader("invoiceitem", obj)
    parent = r.dict_("parent")
    sub = (
        r.str_("subscription", src=r.dict_("subscription_details", src=parent))
        if parent
        else r.str_("subscription")
    )
    return {
        "id": r.id,
        "invoice_id": r.str_("invoice"),
        "customer_id": r.str_("customer", True),
        "amount": r.int_("amount", True),
        "currency": _currency(r),
        "subscription_id": sub,
        "proration": r.bool_("proration"),
    }
