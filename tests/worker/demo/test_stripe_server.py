"""The local Stripe-compatible server behaves as docs/stripe.md says Stripe does, for what we use."""

from __future__ import annotations

import time

import requests

from worker.demo import builders as b
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
