"""The plain record the classifier and the monthly normalization read: one invoice line with what it needs.

Why a record of its own: `metrics/` is pure, so it never reads Stripe JSON or integration tables. The storage
layer (worker/rebuild.py) builds these from stored lines joined with their invoice, price and subscription;
tests build them from Stripe-shaped dicts. Older and current API shapes are already folded into the same
fields by the sync (parent_type for `parent.type`, legacy_type for the older `type`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LineRecord:
    """One invoice line. Money in minor units of `currency`; times in Unix seconds (UTC).

    worker/rebuild.py builds these positionally for speed: keep the field order.
    """

    id: str
    invoice_id: str
    customer_id: str
    currency: str
    amount: int
    period_start: int
    period_end: int
    invoice_status: str | None = "paid"  # draft | open | paid | uncollectible | void
    invoiced_at: int | None = None  # the invoice's `created`
    discount_total: int = 0  # sum(discount_amounts[].amount)
    inclusive_tax: int = 0  # sum of taxes[] with tax_behavior == "inclusive"
    parent_type: str | None = None  # subscription_item_details | invoice_item_details (current API)
    legacy_type: str | None = None  # subscription | invoiceitem (older API versions)
    proration: bool = False
    price_id: str | None = None
    product_id: str | None = None
    price_type: str | None = None  # recurring | one_time (from the stored price)
    interval: str | None = None  # day | week | month | year
    interval_count: int | None = None
    usage_type: str | None = None  # licensed | metered
    subscription_id: str | None = None
    subscription_item_id: str | None = None
    quantity: int | None = None

    @property
    def net_amount(self) -> int:
        """What the customer pays for the service itself: after discounts, without inclusive tax."""
        return self.amount - self.discount_total - self.inclusive_tax
