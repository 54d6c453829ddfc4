"""Reading the events since a cursor: what changed, who was touched, what an earlier read already applied."""

from __future__ import annotations

from integrations.stripe.client import StripeConfig, StripeReader
from integrations.stripe.events import changed_objects, event_record, read_events, seen_after
from worker.demo import builders as b
from worker.demo.stripe_server import FakeStripe, StripeWorld

T = 1_790_000_000


def reader(fake: FakeStripe) -> StripeReader:
    return StripeReader(StripeConfig(api_key="sk_test_123", api_base=fake.url, rps=0))


def world_with_events() -> StripeWorld:
    world = StripeWorld()
    sub = {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active"}
    world.emit("customer.subscription.updated", sub, T, {"cancel_at_period_end": False})
    world.emit(
        "invoice.payment_failed", {"id": "in_1", "object": "invoice", "customer": {"id": "cus_2"}}, T + 1
    )
    world.emit("customer.created", {"id": "cus_3", "object": "customer"}, T + 2)
    world.emit("charge.failed", {"id": "ch_1", "object": "charge", "customer": "cus_1"}, T + 3)  # not stored
    world.emit("invoiceitem.created", {"id": "ii_1", "object": "invoiceitem", "invoice": "in_9"}, T + 4)
    world.emit("customer.updated", {"object": "customer"}, T + 5)  # no id: unreadable
    world.emit("customer.updated", {"id": "cus_old", "object": "customer"}, T - 100)  # before the cursor
    return world


def test_a_read_returns_the_new_events_oldest_first_with_their_customers() -> None:
    with FakeStripe(world_with_events()) as fake:
        batch = read_events(reader(fake), T, seen=())
        assert fake.request_count("/v1/events") == 1
    assert [(e.type, e.list_name, e.object_id, e.customer_id) for e in batch.events] == [
        ("customer.subscription.updated", "subscriptions", "sub_1", "cus_1"),
        ("invoice.payment_failed", "invoices", "in_1", "cus_2"),  # an expanded customer
        ("customer.created", "customers", "cus_3", "cus_3"),
        ("invoiceitem.created", "invoices", "in_9", None),  # its invoice is re-read
    ]
    assert batch.events[0].changed == ("cancel_at_period_end",) and batch.events[0].created == T
    assert [r["object"] for r in batch.rejected] == ["event"] and batch.skipped == 0
    assert len(batch.seen) == 6  # every event returned, the unreadable and the ignored ones too
    assert changed_objects(batch.events) == {
        "subscriptions": {"sub_1"},
        "invoices": {"in_1", "in_9"},
        "customers": {"cus_3"},
    }


def test_events_an_earlier_read_applied_are_skipped() -> None:
    with FakeStripe(world_with_events()) as fake:
        first = read_events(reader(fake), T, seen=())
        again = read_events(reader(fake), T, seen={event_id for event_id, _ in first.seen})
    assert again.events == [] and again.rejected == [] and again.skipped == 6


def test_seen_keeps_only_what_the_next_read_can_return() -> None:
    assert seen_after([("evt_b", T + 5), ("evt_a", T - 1), ("evt_b", T + 5)], T) == [["evt_b", T + 5]]


def test_an_event_about_an_object_we_do_not_store_is_none() -> None:
    assert (
        event_record(
            b.event("evt_1", "payment_intent.created", {"id": "pi_1", "object": "payment_intent"}, T)
        )
        is None
    )
