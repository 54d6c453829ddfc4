"""The fast line parser must say exactly what the checked one says, or step aside.

`records._parse_line_fast` repeats `parse_line`'s checked path with plain dict reads because the sync spends
most of its own time there. The two can only drift apart silently, so hypothesis generates Stripe-shaped lines
(current and older shapes, every field sometimes missing, null or of a wrong type) and checks: whenever the
fast path answers, the checked path gives the same row; whenever the checked path refuses a line, the fast
path does not answer; and on well-formed current-shape lines the fast path does answer (so it is not vacuous).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.stripe.records import RecordError, _parse_line_checked, _parse_line_fast

IDS = st.sampled_from(["sub_1", "si_1", "price_1", "prod_1", "x"])
WRONG = st.one_of(
    st.integers(-5, 5), st.booleans(), st.floats(allow_nan=False), st.lists(st.none(), max_size=1)
)
EXPANDED = st.builds(lambda i: {"id": i, "object": "price"}, IDS)


def maybe(good: st.SearchStrategy[Any], bad: bool) -> st.SearchStrategy[Any]:
    """A field as Stripe sends it, or (when `bad`) also missing-as-null, mistyped or expanded."""
    return st.one_of(good, st.none(), WRONG, EXPANDED) if bad else st.one_of(good, st.none())


def amounts(bad: bool) -> st.SearchStrategy[Any]:
    entry = st.fixed_dictionaries(
        {
            "amount": maybe(st.integers(0, 10_000), True) if bad else st.integers(0, 10_000),
            "tax_behavior": st.sampled_from(["inclusive", "exclusive"]),
            "inclusive": st.booleans(),
        }
    )
    lists = st.lists(entry, max_size=3)
    return st.one_of(lists, st.none(), WRONG) if bad else lists


def current_line(bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A line of the current API shape (`parent`, `pricing`)."""
    parent_type = st.sampled_from(["subscription_item_details", "invoice_item_details"])
    details = st.fixed_dictionaries(
        {
            "proration": maybe(st.booleans(), bad),
            "subscription": maybe(IDS, bad),
            "subscription_item": maybe(IDS, bad),
        }
    )
    parent = st.builds(lambda t, d: {"type": t, t: d}, parent_type, details)
    pricing = st.fixed_dictionaries(
        {
            "price_details": maybe(
                st.fixed_dictionaries({"price": maybe(IDS, bad), "product": maybe(IDS, bad)}), bad
            )
        }
    )
    period = st.fixed_dictionaries(
        {"start": maybe(st.integers(0, 2**33), bad), "end": maybe(st.integers(0, 2**33), bad)}
    )
    return st.fixed_dictionaries(
        {
            "id": st.sampled_from(["il_1", "il_2"])
            if not bad
            else st.one_of(st.just("il_1"), st.just(""), WRONG),
            "object": st.just("line_item"),
            "amount": st.integers(-10_000, 100_000)
            if not bad
            else maybe(st.integers(-10_000, 100_000), True),
            "currency": maybe(st.sampled_from(["usd", "EUR", ""]), bad),
            "description": maybe(st.text(max_size=8), bad),
            "quantity": maybe(st.integers(0, 500), bad),
            "period": maybe(period, bad),
            "parent": st.one_of(parent, st.just({}), WRONG) if bad else parent,
            "pricing": maybe(pricing, bad),
            "taxes": amounts(bad),
            "discount_amounts": amounts(bad),
        }
    )


def older_line() -> st.SearchStrategy[dict[str, Any]]:
    """A line of an older API version (`type`, `price`, `proration`, `tax_amounts`): never the fast path's."""
    return st.fixed_dictionaries(
        {
            "id": st.just("il_old"),
            "amount": st.integers(0, 10_000),
            "type": st.sampled_from(["subscription", "invoiceitem"]),
            "proration": st.booleans(),
            "price": st.one_of(IDS, EXPANDED, st.none()),
            "tax_amounts": amounts(False),
            "period": st.fixed_dictionaries({"start": st.integers(0, 2**33), "end": st.integers(0, 2**33)}),
        }
    )


def checked(line: Any, invoice_id: str | None) -> dict[str, Any] | RecordError:
    try:
        return _parse_line_checked(line, invoice_id, "cus_1", "usd")
    except RecordError as exc:
        return exc


@settings(max_examples=400, deadline=None)
@given(
    line=st.one_of(current_line(bad=True), older_line(), WRONG), invoice_id=st.sampled_from(["in_1", None])
)
def test_the_fast_path_answers_only_what_the_checked_path_would(line: Any, invoice_id: str | None) -> None:
    fast = _parse_line_fast(line, invoice_id, "cus_1", "usd")
    slow = checked(line, invoice_id)
    if fast is not None:
        assert not isinstance(slow, RecordError), (
            f"fast path accepted a line the checked path refuses: {slow}"
        )
        assert fast == slow


@settings(max_examples=200, deadline=None)
@given(line=current_line(bad=False))
def test_the_fast_path_takes_every_well_formed_current_line(line: dict[str, Any]) -> None:
    fast = _parse_line_fast(line, "in_1", "cus_1", "usd")
    assert fast is not None
    assert fast == _parse_line_checked(line, "in_1", "cus_1", "usd")


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", True), ("pricing", ""), ("period", []), ("parent", {"type": "x"}), ("quantity", 1.5)],
)
def test_a_mistyped_field_leaves_the_line_to_the_checked_path(field: str, value: Any) -> None:
    line = {
        "id": "il_1",
        "amount": 100,
        "parent": {"type": "subscription_item_details", "subscription_item_details": {"proration": False}},
        field: value,
    }
    assert _parse_line_fast(line, "in_1", "cus_1", "usd") is None
