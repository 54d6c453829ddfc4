"""The local Stripe-compatible server behaves as docs/stripe.md says Stripe does, for what we use."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import requests

from worker.demo import builders as b
from worker.demo.sample import build_sample_world
from worker.demo.stripe_server import FakeStripe, Fault, StripeWorld

AUTH = {"Authorization": "Bearer sk_test_123"}


def get(fake: FakeStripe, path: str, **params: object) -> requests.Response:
    return requests.get(f"{fake.url}{path}", params=params, headers=AUTH, timeout=5)  # type: ignore[arg-type]


def test_lists_are_newest_first_filtered_by_created_and_leave_deleted_customers_out() -> None:
    world = StripeWorld()
    world.add_all(b.customer(f"cus_{n}", created=100 + n) for n in range(5))
    world.delete_customer("cus_2")
    with FakeStripe(world) as fake:
        listed = get(fake, "/v1/customers", limit=100).json()
        ranged = get(fake, "/v1/customers", **{"created[gte]": 101, "created[lt]": 104}).json()
        deleted = get(fake, "/v1/customers/cus_2").json()
    assert [c["id"] for c in listed["data"]] == ["cus_4", "cus_3", "cus_1", "cus_0"]
    assert [c["id"] for c in ranged["data"]] == ["cus_3", "cus_1"]
    assert deleted["deleted"] is True and deleted["id"] == "cus_2"


def test_subscriptions_leave_out_canceled_unless_status_all() -> None:
    world = StripeWorld()
    price = b.price("price_1", "prod_1", 100)
    world.add(
        b.subscription("sub_live", "cus_1", [b.subscription_item("si_1", "sub_live", price)], created=2)
    )
    world.add(
        b.subscription(
            "sub_gone",
            "cus_1",
            [b.subscription_item("si_2", "sub_gone", price)],
            status="canceled",
            created=1,
        )
    )
    with FakeStripe(world) as fake:
        default = [s["id"] for s in get(fake, "/v1/subscriptions").json()["data"]]
        everything = [s["id"] for s in get(fake, "/v1/subscriptions", status="all").json()["data"]]
    assert (default, everything) == (["sub_live"], ["sub_live", "sub_gone"])


def test_a_subscription_embeds_its_first_items_and_lists_the_rest() -> None:
    world = StripeWorld()
    price = b.price("price_1", "prod_1", 100)
    items = [b.subscription_item(f"si_{n:02d}", "sub_1", price) for n in range(25)]
    world.add(b.subscription("sub_1", "cus_1", items))
    with FakeStripe(world, embedded_items=10) as fake:
        sub = get(fake, "/v1/subscriptions/sub_1").json()
        listed = get(fake, "/v1/subscriptions", status="all").json()["data"][0]
        rest = get(
            fake, "/v1/subscription_items", subscription="sub_1", limit=10, starting_after="si_09"
        ).json()
        last = get(
            fake, "/v1/subscription_items", subscription="sub_1", limit=10, starting_after="si_19"
        ).json()
        missing = get(fake, "/v1/subscription_items")
        unknown = get(fake, "/v1/subscription_items", subscription="sub_none")
    for shown in (sub["items"], listed["items"]):
        assert [i["id"] for i in shown["data"]] == [f"si_{n:02d}" for n in range(10)]
        assert shown["has_more"] is True and shown["total_count"] == 25
        assert shown["url"] == "/v1/subscription_items?subscription=sub_1"
    assert [i["id"] for i in rest["data"]] == [f"si_{n}" for n in range(10, 20)] and rest["has_more"]
    assert [i["id"] for i in last["data"]] == [f"si_{n}" for n in range(20, 25)] and not last["has_more"]
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "parameter_missing"
    assert unknown.status_code == 404


def test_a_deleted_customers_subscriptions_are_canceled_and_still_listed() -> None:
    world = StripeWorld()
    price = b.price("price_1", "prod_1", 100)
    world.add(b.customer("cus_1", created=1))
    world.add(b.subscription("sub_1", "cus_1", [b.subscription_item("si_1", "sub_1", price)], created=2))
    world.delete_customer("cus_1", at=500)
    with FakeStripe(world) as fake:
        everything = get(fake, "/v1/subscriptions", status="all").json()["data"]
        default = get(fake, "/v1/subscriptions").json()["data"]
    assert [(s["id"], s["status"], s["ended_at"]) for s in everything] == [("sub_1", "canceled", 500)]
    assert default == []


def test_faults_raw_bodies_and_writes_are_recorded() -> None:
    with FakeStripe(StripeWorld()) as fake:
        fake.inject(
            Fault(status=200, body="{broken", path_prefix="/v1/prices"),
            Fault(status=429, headers={"Stripe-Should-Retry": "false"}),
        )
        broken = get(fake, "/v1/prices")
        limited = get(fake, "/v1/customers")
        fine = get(fake, "/v1/customers")
        write = requests.post(f"{fake.url}/v1/customers", data={"name": "x"}, headers=AUTH, timeout=5)
    assert (broken.status_code, broken.text) == (200, "{broken")
    assert limited.status_code == 429 and limited.headers["Stripe-Should-Retry"] == "false"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert fine.status_code == 200
    assert write.status_code == 405 and fake.writes == ["/v1/customers"]


def test_keep_alive_requests_are_fast() -> None:
    """Headers and body are written separately: without TCP_NODELAY each request waited ~40 ms for an ACK."""
    with FakeStripe(StripeWorld()) as fake:
        session = requests.Session()
        session.get(f"{fake.url}/v1/customers", headers=AUTH, timeout=5)
        times = []
        for _ in range(20):
            start = time.perf_counter()
            session.get(f"{fake.url}/v1/customers", headers=AUTH, timeout=5)
            times.append(time.perf_counter() - start)
    assert min(times) < 0.03  # with the delayed ACK every single request takes >= 40 ms


def test_a_change_records_its_event_with_the_old_values_and_events_are_listed_newest_first() -> None:
    world = StripeWorld()
    world.add(b.customer("cus_1", created=100))
    world.add(b.subscription("sub_1", "cus_1", [], created=100))
    world.change("subscription", "sub_1", "customer.subscription.updated", 200, cancel_at_period_end=True)
    world.emit("customer.updated", world.get("customer", "cus_1") or {}, 300)
    with FakeStripe(world) as fake:
        events = get(fake, "/v1/events", **{"created[gte]": 150}).json()["data"]
        typed = get(fake, "/v1/events", **{"types[]": "customer.updated"}).json()["data"]
        sub = get(fake, "/v1/subscriptions/sub_1").json()
    assert [e["type"] for e in events] == ["customer.updated", "customer.subscription.updated"]
    changed = events[1]["data"]
    assert changed["object"]["cancel_at_period_end"] is True and changed["previous_attributes"] == {
        "cancel_at_period_end": False
    }
    assert [e["type"] for e in typed] == ["customer.updated"] and sub["cancel_at_period_end"] is True
    world.change("subscription", "sub_1", "customer.subscription.updated", 400, cancel_at_period_end=False)
    assert changed["object"]["cancel_at_period_end"] is True  # an event keeps its snapshot


def every_page(fake: FakeStripe, path: str, **params: object) -> list[dict[str, object]]:
    """Every page of a list, 7 objects at a time, as the client pages it."""
    pages: list[dict[str, object]] = []
    after: str | None = None
    while True:
        extra = {"starting_after": after} if after else {}
        page = get(fake, path, limit=7, **params, **extra).json()
        pages.append(page)
        if not page["has_more"]:
            return pages
        after = page["data"][-1]["id"]


def test_a_packed_sample_serves_what_the_same_sample_as_dicts_serves(tmp_path: Path) -> None:
    """Every list (whole, by status, by created range, by customer), object, lines, items: the same JSON."""
    plain = build_sample_world(seed=3, customers=40, months=14, end=date(2026, 6, 1))
    packed = build_sample_world(seed=3, customers=40, months=14, end=date(2026, 6, 1), packed=True)
    packed.save(str(tmp_path / "sample.world"))
    loaded = StripeWorld.load(str(tmp_path / "sample.world"))
    assert packed.collections["invoice"].packed and not plain.collections["invoice"].packed
    ranged = {"created[gte]": 1_740_000_000, "created[lt]": 1_760_000_000}
    queries: list[tuple[str, dict[str, object]]] = [
        (f"/v1/{name}", extra)
        for name in ("customers", "products", "prices", "subscriptions", "invoices", "credit_notes", "events")
        for extra in ({}, {"status": "all"}, ranged)
    ]
    queries += [("/v1/invoices", {"customer": "cus_0000002"}), ("/v1/events", {"types[]": "invoice.paid"})]
    long_invoice = next(i for i, lines in plain.invoice_lines.items() if len(lines) > 10)
    with FakeStripe(plain) as a, FakeStripe(packed) as b_, FakeStripe(loaded) as c:
        for path, params in queries:
            expected = every_page(a, path, **params)
            assert every_page(b_, path, **params) == expected == every_page(c, path, **params), path
        for path in (
            "/v1/customers/cus_0000001",
            "/v1/subscriptions/sub_0000001",
            f"/v1/invoices/{long_invoice}",
            f"/v1/invoices/{long_invoice}/lines?limit=100",
            "/v1/subscription_items?subscription=sub_0000001&limit=100",
        ):
            assert get(a, path).json() == get(b_, path).json() == get(c, path).json(), path
        shown = get(b_, f"/v1/invoices/{long_invoice}").json()["lines"]
    assert (len(shown["data"]), shown["has_more"]) == (10, True)


def test_a_packed_object_changed_or_added_is_served_as_changed() -> None:
    world = StripeWorld()
    world.add_all(b.customer(f"cus_{n}", created=100 + n) for n in range(3))
    world.pack()
    world.change("customer", "cus_1", "customer.updated", 200, email="new@example.com")
    world.add(b.customer("cus_9", created=50))
    world.delete_customer("cus_0")
    with FakeStripe(world) as fake:
        listed = get(fake, "/v1/customers").json()["data"]
        event = get(fake, "/v1/events").json()["data"][0]
    assert [c["id"] for c in listed] == ["cus_2", "cus_1", "cus_9"]
    assert listed[1]["email"] == "new@example.com" == event["data"]["object"]["email"]
    assert world.collections["customer"].by_id["cus_1"]["email"] == "new@example.com"
