"""Paging: limit=100 cursors, created ranges that cover everything once, the rest of an invoice's lines."""

from __future__ import annotations

import responses
from hypothesis import given
from hypothesis import strategies as st

from integrations.stripe.client import RetryPolicy, StripeConfig, StripeReader
from integrations.stripe.pages import (
    balanced_ranges,
    complete_items,
    complete_lines,
    iter_pages,
    list_params,
    split_range,
)
from integrations.stripe.ratelimit import Unlimited
from worker.demo import builders as b
from worker.demo.stripe_server import FakeStripe, StripeWorld

BASE = "http://stripe.test"


def reader(base: str = BASE) -> StripeReader:
    return StripeReader(
        StripeConfig(api_key="sk_test_123", api_base=base), limiter=Unlimited(), retry=RetryPolicy(attempts=1)
    )


@responses.activate
def test_pages_follow_starting_after_until_has_more_is_false() -> None:
    responses.get(
        f"{BASE}/v1/customers",
        match=[responses.matchers.query_param_matcher({"limit": "100"})],
        json={"object": "list", "data": [{"id": "cus_3"}, {"id": "cus_2"}], "has_more": True},
    )
    responses.get(
        f"{BASE}/v1/customers",
        match=[responses.matchers.query_param_matcher({"limit": "100", "starting_after": "cus_2"})],
        json={"object": "list", "data": [{"id": "cus_1"}], "has_more": False},
    )
    pages = list(iter_pages(reader(), "/v1/customers", list_params()))
    assert [[o["id"] for o in p.objects] for p in pages] == [["cus_3", "cus_2"], ["cus_1"]]
    assert [(p.last_id, p.has_more) for p in pages] == [("cus_2", True), ("cus_1", False)]


def test_created_ranges_page_a_real_server_without_gaps_or_overlap() -> None:
    world = StripeWorld()
    world.add_all(b.customer(f"cus_{n:04d}", created=1000 + n * 7) for n in range(450))
    with FakeStripe(world) as fake:
        seen: list[str] = []
        for gte, lt in split_range(1000, 1000 + 450 * 7, 4):
            for page in iter_pages(reader(fake.url), "/v1/customers", list_params(gte=gte, lt=lt)):
                assert len(page.objects) <= 100
                seen.extend(o["id"] for o in page.objects)
    assert sorted(seen) == sorted(world.collections["customer"].by_id)
    # ranges of 787 s hold 113, 112, 113 and 112 customers (one every 7 s): two pages of 100 each
    assert fake.request_count("/v1/customers") == 8


@given(st.integers(0, 10**9), st.integers(0, 10**6), st.integers(1, 12), st.integers(-(10**6), 2 * 10**9))
def test_split_range_covers_every_time_exactly_once(start: int, width: int, parts: int, t: int) -> None:
    ranges = split_range(start, start + width, parts)
    inside = [(gte, lt) for gte, lt in ranges if (gte is None or t >= gte) and (lt is None or t < lt)]
    assert len(inside) == 1
    assert ranges[0][0] is None and ranges[-1][1] is None


def test_complete_lines_fetches_what_the_invoice_did_not_embed() -> None:
    lines = [b.line(f"il_{n:02d}", "in_1", 100, (1, 2)) for n in range(25)]
    world = StripeWorld()
    world.add(b.invoice("in_1", "cus_1", lines))
    with FakeStripe(world, embedded_lines=10) as fake:
        r = reader(fake.url)
        invoice = r.get("/v1/invoices/in_1")
        assert len(invoice["lines"]["data"]) == 10 and invoice["lines"]["has_more"]
        complete_lines(r, invoice)
    assert [ln["id"] for ln in invoice["lines"]["data"]] == [ln["id"] for ln in lines]
    assert fake.requests[-1] == ("GET", "/v1/invoices/in_1/lines?limit=100&starting_after=il_09")


def test_complete_items_fetches_what_the_subscription_did_not_embed() -> None:
    price = b.price("price_1", "prod_1", 100)
    items = [b.subscription_item(f"si_{n:03d}", "sub_1", price) for n in range(130)]
    world = StripeWorld()
    world.add(b.subscription("sub_1", "cus_1", items))
    with FakeStripe(world, embedded_items=10) as fake:
        r = reader(fake.url)
        sub = r.get("/v1/subscriptions/sub_1")
        assert len(sub["items"]["data"]) == 10 and sub["items"]["has_more"]
        complete_items(r, sub)
    assert [i["id"] for i in sub["items"]["data"]] == [i["id"] for i in items]
    assert sub["items"]["has_more"] is False
    assert [path for _, path in fake.requests[1:]] == [
        "/v1/subscription_items?limit=100&subscription=sub_1&starting_after=si_009",
        "/v1/subscription_items?limit=100&subscription=sub_1&starting_after=si_109",
    ]


def test_balanced_ranges_follow_the_billed_area() -> None:
    # every customer starts at 0: invoices accrue evenly in time, so the ranges are equal in time
    assert balanced_ranges([0] * 10, 1000, 4) == [(None, 250), (250, 500), (500, 750), (750, None)]
    # one customer every 10 s: invoices before t grow like t^2 / 2, so quarter-area bounds sit near
    # 1000 * sqrt(1/4, 2/4, 3/4) = 500, 707, 866
    ranges = balanced_ranges(list(range(0, 1000, 10)), 1000, 4)
    bounds = [lt for _, lt in ranges[:-1]]
    assert all(abs(got - want) <= 6 for got, want in zip(bounds, [500, 707, 866], strict=True))
    assert balanced_ranges([], 1000, 4) == [(None, None)]


@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=50), st.integers(1, 12), st.integers(-1, 3 * 10**6)
)
def test_balanced_ranges_cover_every_time_exactly_once(starts: list[int], parts: int, t: int) -> None:
    ranges = balanced_ranges(sorted(starts), 2 * 10**6, parts)
    assert len(ranges) <= parts
    inside = [(gte, lt) for gte, lt in ranges if (gte is None or t >= gte) and (lt is None or t < lt)]
    assert len(inside) == 1


def test_range_share_counts_each_created_range_as_an_equal_part() -> None:
    from integrations.stripe.pages import oldest_created, range_share

    def seg(gte: int | None, lt: int | None, oldest: int | None = None, done: bool = False) -> dict:  # type: ignore[type-arg]
        return {"list": "invoices", "gte": gte, "lt": lt, "oldest": oldest, "done": done}

    span: list[int | None] = [0, 400]
    assert range_share([], span) is None
    # two ranges [0, 200) and [200, 400): the first done, the second read back from 400 to 300 -> half of it
    assert range_share([seg(None, 200, done=True), seg(200, None, oldest=300)], span) == 0.75
    # a range not started yet counts nothing; an open first range starts at the oldest customer
    assert range_share([seg(None, 200, oldest=100), seg(200, None)], span) == 0.25
    assert (
        range_share([seg(None, None, oldest=100)], [None, 400]) == 0.0
    )  # no start known: nothing counted until done
    assert oldest_created([{"created": 30}, {"created": 10}, "junk"], 20) == 10
    assert oldest_created([], None) is None
