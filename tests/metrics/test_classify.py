"""The classification table of docs/mrr.md on Stripe-shaped lines, current and older API shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from metrics.classify import ONE_TIME, PRORATION, RECURRING, classify, invoice_exclusion
from tests.support import stripe_fixtures
from tests.support.line_helpers import record_from_line
from worker.demo import builders as b

FIXTURES = stripe_fixtures()
MONTHLY = b.price("price_m", "prod_pro", 10000)
ONE_OFF = b.price("price_setup", "prod_setup", 50000, interval=None)
PERIOD = (1_767_225_600, 1_769_904_000)  # 2026-01-01 .. 2026-02-01


@pytest.mark.parametrize("legacy", [False, True])
def test_full_period_subscription_line_is_recurring(legacy: bool) -> None:
    line = b.line(
        "il_1",
        "in_1",
        10000,
        PERIOD,
        price_obj=MONTHLY,
        subscription="sub_1",
        subscription_item="si_1",
        legacy=legacy,
    )
    c = classify(record_from_line(line, MONTHLY))
    assert c.klass == RECURRING
    assert c.reason == (
        "type is subscription (older API version)" if legacy else "parent.type is subscription_item_details"
    )


@pytest.mark.parametrize("legacy", [False, True])
def test_proration_of_a_recurring_price_is_a_proration(legacy: bool) -> None:
    """Upgrade mid-period: the credit for unused time and the charge for the rest: both prorations."""
    unused = b.line(
        "il_u",
        "in_1",
        -5000,
        PERIOD,
        price_obj=MONTHLY,
        subscription="sub_1",
        subscription_item="si_1",
        proration=True,
        legacy=legacy,
    )
    remaining = b.line(
        "il_r", "in_1", 10000, PERIOD, price_obj=MONTHLY, subscription="sub_1", proration=True, legacy=legacy
    )  # an invoice item line carrying the proration
    for line in (unused, remaining):
        c = classify(record_from_line(line, MONTHLY))
        assert c.klass == PRORATION
        assert "proration is true" in c.reason


def test_invoice_item_with_recurring_price_is_recurring() -> None:
    """An invoice item billing a recurring price (no subscription item) counts: its price decides."""
    line = b.line("il_1", "in_1", 10000, PERIOD, price_obj=MONTHLY)
    c = classify(record_from_line(line, MONTHLY))
    assert (c.klass, c.reason) == (RECURRING, "price price_m is recurring")


@pytest.mark.parametrize("legacy", [False, True])
def test_setup_fee_is_one_time(legacy: bool) -> None:
    line = b.line("il_s", "in_1", 50000, (PERIOD[0], PERIOD[0]), price_obj=ONE_OFF, legacy=legacy)
    assert classify(record_from_line(line, ONE_OFF)).klass == ONE_TIME
    bare = b.line("il_x", "in_1", 25000, (PERIOD[0], PERIOD[0]), description="Implementation", legacy=legacy)
    c = classify(record_from_line(bare))
    assert c.klass == ONE_TIME
    assert c.reason == (
        "type is invoiceitem without a recurring price (older API version)"
        if legacy
        else "invoice item without a recurring price"
    )


@pytest.mark.parametrize(
    "status,excluded",
    [
        ("draft", "draft invoice"),
        ("void", "void invoice"),
        ("open", None),
        ("paid", None),
        ("uncollectible", None),
    ],
)
def test_draft_and_void_invoices_are_left_out(status: str, excluded: str | None) -> None:
    line = b.line(
        "il_1", "in_1", 10000, PERIOD, price_obj=MONTHLY, subscription="sub_1", subscription_item="si_1"
    )
    assert invoice_exclusion(record_from_line(line, MONTHLY, invoice_status=status)) == excluded


def _fixture_lines() -> list[dict[str, Any]]:
    resources = json.loads(FIXTURES.read_text())["resources"]
    return [resources["line_item"], *resources["invoice"]["lines"]["data"]]


def test_stripe_example_lines_are_classified_by_their_parent() -> None:
    """Stripe's own examples: parent.type is invoice_item_details and its proration flag is true."""
    lines = _fixture_lines()
    assert len(lines) == 2
    for line in lines:
        record = record_from_line(line)
        assert record.parent_type == "invoice_item_details" and record.proration is True
        c = classify(record)
        assert (c.klass, c.reason) == (PRORATION, "parent.invoice_item_details.proration is true")


def test_stripe_example_line_without_proration_is_one_time() -> None:
    line = json.loads(json.dumps(_fixture_lines()[0]))
    line["parent"]["invoice_item_details"]["proration"] = False
    c = classify(record_from_line(line))
    assert (c.klass, c.reason) == (ONE_TIME, "invoice item without a recurring price")
