"""Test helper: a raw Stripe line dict (current or older shape) and its price -> the classifier's LineRecord.

The line goes through the sync's own parser (integrations/stripe/records.py, parse_line), so classifier tests
see exactly the columns the rebuild reads, for Stripe's own examples as well as the builders' objects.
"""

from __future__ import annotations

from typing import Any

from integrations.stripe.records import parse_line
from metrics.records import LineRecord

Obj = dict[str, Any]


def record_from_line(
    line: Obj,
    price: Obj | None = None,
    invoice_status: str = "paid",
    customer: str = "cus_1",
    invoiced_at: int | None = None,
) -> LineRecord:
    row = parse_line(line, line.get("invoice") or "in_test", customer, line.get("currency"))
    recurring = (price or {}).get("recurring") or {}
    return LineRecord(
        id=row["id"],
        invoice_id=row["invoice_id"],
        customer_id=customer,
        currency=row["currency"],
        amount=row["amount"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        invoice_status=invoice_status,
        invoiced_at=invoiced_at,
        discount_total=row["discount_total"],
        inclusive_tax=row["inclusive_tax"],
        parent_type=row["parent_type"],
        legacy_type=row["legacy_type"],
        proration=row["proration"],
        price_id=row["price_id"],
        product_id=row["product_id"] or (price or {}).get("product"),
        price_type=(price or {}).get("type"),
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count"),
        usage_type=recurring.get("usage_type"),
        subscription_id=row["subscription_id"],
        subscription_item_id=row["subscription_item_id"],
        quantity=row["quantity"],
    )
