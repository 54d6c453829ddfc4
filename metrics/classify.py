"""Every invoice line gets exactly one class and the reason it was chosen (docs/mrr.md).

The rules are a table applied in order, first match wins, so the order *is* the definition: a proration of a
recurring price is a proration (it never counts in MRR), then anything that bills a subscription item for a
full period or carries a recurring price is recurring, and everything else is one-time. The reason names the
field that decided, so `retention explain` can show why a line counts or not.

Invoice status is a separate question from the class: lines of `draft` and `void` invoices keep their class
but are left out (`excluded_reason`), so explain can still show them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from metrics.records import LineRecord

RECURRING = "recurring"
PRORATION = "proration"
ONE_TIME = "one_time"

IGNORED_INVOICE_STATUSES = frozenset({"draft", "void"})


@dataclass(frozen=True, slots=True)
class Classification:
    klass: str
    reason: str


Rule = tuple[Callable[[LineRecord], bool], str, Callable[[LineRecord], str]]

RULES: tuple[Rule, ...] = (
    (
        lambda r: r.proration and r.parent_type is not None,
        PRORATION,
        lambda r: f"parent.{r.parent_type}.proration is true",
    ),
    (lambda r: r.proration, PRORATION, lambda r: "proration is true (older API version)"),
    (
        lambda r: r.parent_type == "subscription_item_details",
        RECURRING,
        lambda r: "parent.type is subscription_item_details",
    ),
    (
        lambda r: r.legacy_type == "subscription",
        RECURRING,
        lambda r: "type is subscription (older API version)",
    ),
    (lambda r: r.price_type == "recurring", RECURRING, lambda r: f"price {r.price_id} is recurring"),
    (lambda r: True, ONE_TIME, lambda r: _one_time_reason(r)),
)


def _one_time_reason(record: LineRecord) -> str:
    if record.parent_type == "invoice_item_details":
        return "invoice item without a recurring price"
    if record.legacy_type == "invoiceitem":
        return "type is invoiceitem without a recurring price (older API version)"
    return "no subscription item and no recurring price"


def classify(record: LineRecord) -> Classification:
    """The line's class and the reason (the first rule of RULES that holds)."""
    for holds, klass, reason in RULES:
        if holds(record):
            return Classification(klass, reason(record))
    raise AssertionError("the last rule always holds")  # pragma: no cover


def invoice_exclusion(record: LineRecord) -> str | None:
    """Why a line is left out whatever its class: its invoice is a draft or void (else None)."""
    status = (record.invoice_status or "").lower()
    if status in IGNORED_INVOICE_STATUSES:
        return f"{status} invoice"
    return None
