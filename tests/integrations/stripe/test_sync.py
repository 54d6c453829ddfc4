"""Full and incremental sync against the local Stripe server, stored on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import Connection, Engine

from integrations.stripe import sync as sync_module
from integrations.stripe.client import RetryPolicy, StripeConfig, StripeReader, StripeReadError
from integrations.stripe.models import (
    StripeCustomer,
    StripeInvoice,
    StripeInvoiceLine,
    StripeSubscription,
    StripeSubscriptionItem,
    SyncState,
)
from integrations.stripe.store import CHILD_TABLES, LIST_TABLES
from integrations.stripe.sync import Syncer
from integrations.stripe.writer_process import SeparateWriter
from metrics.tables import table_of
from tests.support.stripe_world import KEY, T0, add_account, build_world, counts, snapshot, world_totals
from worker.demo import builders as b
from worker.demo.stripe_server import FakeStripe, Fault, StripeWorld

FAST = RetryPolicy(attempts=4, base=0.001, max_wait=0.01)


def syncer(
    engine: Engine, account_id: int, server: FakeStripe, workers: int = 8, separate_writer: bool = True
) -> Syncer:
    reader = StripeReader(StripeConfig(api_key=KEY, api_base=server.url, rps=0), retry=FAST)
    return Syncer(engine, account_id, reader, workers=workers, separate_writer=separate_writer)


def new_account(engine: Engine, server: FakeStripe, name: str = "acme") -> int:
    """The id of a new connected account reading from the local server, nothing synced yet."""
    account = add_account(engine, server.url, name=name)
    assert account.id is not None
    return account.id


def synced_account(engine: Engine, server: FakeStripe) -> int:
    """The id of a new connected account after its first (full) sync."""
    account_id = new_account(engine, server)
    syncer(engine, account_id, server).run()
    return account_id


def assert_everything_stored(engine: Engine, account_id: int, world: StripeWorld) -> None:
    assert counts(engine, account_id) == world_totals(world)


def test_full_sync_stores_every_object_of_every_status(
    engine: Engine, server: FakeStripe, world: StripeWorld
) -> None:
    account_id = new_account(engine, server)
    outcome = syncer(engine, account_id, server).run()
    assert (outcome.mode, outcome.rejected) == ("full", [])
    assert_everything_stored(engine, account_id, world)
    with engine.connect() as conn:
        subs = table_of(StripeSubscription)
        statuses = {r[0] for r in conn.execute(select(subs.c.status).where(subs.c.account_id == account_id))}
        inv = table_of(StripeInvoice)
        drafts = conn.execute(select(inv.c.id).where(inv.c.status == "draft")).all()
    assert statuses == {"active", "canceled"}  # status=all: canceled subscriptions too
    assert drafts  # invoices of every status
    long_invoices = sum(1 for lines in world.invoice_lines.values() if len(lines) > server.embedded_lines)
    assert server.request_count("/v1/invoices/") == long_invoices  # one /lines call per invoice with has_more
    assert all("limit=100" in path for _, path in server.requests)


def test_a_full_syncs_pages_commit_without_waiting_for_the_disk_on_postgresql(
    pg_engine: Engine, server: FakeStripe, world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each page's transaction asks PostgreSQL not to wait for the flush of its commit (store.py says why that
    is safe), for that transaction only: the pool's connections come back as they were."""
    settings: list[str] = []
    store_page = sync_module.store_page

    def noting(conn: Connection, *args: Any, **kwargs: Any) -> Any:
        settings.append(conn.execute(text("SHOW synchronous_commit")).scalar_one())
        return store_page(conn, *args, **kwargs)

    monkeypatch.setattr(sync_module, "store_page", noting)
    account_id = new_account(pg_engine, server)
    syncer(pg_engine, account_id, server).run()

    assert len(settings) >= len(sync_module.LISTS) and set(settings) == {"off"}
    assert_everything_stored(pg_engine, account_id, world)
    with ExitStack() as stack:  # more connections than the sync held: every pooled one among them
        conns = [stack.enter_context(pg_engine.connect()) for _ in range(4)]
        assert {c.execute(text("SHOW synchronous_commit")).scalar_one() for c in conns} == {"on"}


def test_a_full_sync_runs_without_automatic_cycle_collection_and_restores_it(
    engine: Engine, server: FakeStripe, world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector walked the queued pages again and again for nothing (sync.py says why): it is paused
    while pages are fetched and stored, the young generations are collected every COLLECT_EVERY pages so the
    HTTP stack's few cycles do not pile up, and it is on again afterwards."""
    monkeypatch.setattr(sync_module, "COLLECT_EVERY", 3)
    enabled: list[bool] = []
    collected: list[int] = []
    store_page = sync_module.store_page
    collect = gc.collect

    def noting(conn: Connection, *args: Any, **kwargs: Any) -> Any:
        enabled.append(gc.isenabled())
        return store_page(conn, *args, **kwargs)

    def counting(generation: int = 2) -> int:
        collected.append(generation)
        return collect(generation)

    monkeypatch.setattr(sync_module, "store_page", noting)
    monkeypatch.setattr(sync_module.gc, "collect", counting)
    assert gc.isenabled()
    account_id = new_account(engine, server)
    syncer(engine, account_id, server).run()

    assert enabled and not any(enabled)
    assert gc.isenabled()
    pages = len(enabled)
    assert collected and set(collected) == {1} and len(collected) <= pages // 3  # young only, not per page
    assert_everything_stored(engine, account_id, world)


def test_the_writer_holds_pages_in_one_transaction_until_it_is_due(
    engine: Engine, server: FakeStripe, world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages stored by the writer stay in its open transaction, invisible to others, until TX_SECONDS have
    passed since it opened; they then commit together with the cursor past them, and are counted."""
    assert_held_until_due(engine, server, world, monkeypatch, separate=False)


def assert_held_until_due(
    engine: Engine, server: FakeStripe, world: StripeWorld, monkeypatch: pytest.MonkeyPatch, separate: bool
) -> None:
    """Three pages written to a full sync's writer (`separate`: through a separate writer process, whose
    commit is in flight until settled and counted only then), the last one once the transaction is due."""
    account_id = new_account(engine, server)
    syncer_ = syncer(engine, account_id, server)
    syncer_.state()
    counted: list[tuple[str, int]] = []
    syncer_.progress = lambda name, n, share: counted.append((name, n))
    segment = {"list": "invoices", "gte": None, "lt": None, "after": None, "done": False}
    checkpoint = {"started": T0, "listing": T0, "segments": {"invoices": segment}, "rejected": []}
    writer = sync_module._FullRun(syncer_, checkpoint)
    if separate:
        writer.writer = SeparateWriter(engine)
    invoices = sorted(world.collections["invoice"].by_id.values(), key=lambda o: o["id"])
    first, second = invoices[:3], invoices[3:5]
    inv = table_of(StripeInvoice)

    def stored() -> tuple[int, Any]:
        with engine.connect() as conn:
            n = conn.execute(select(inv.c.id).where(inv.c.account_id == account_id)).all()
            state = conn.execute(select(table_of(SyncState).c.checkpoint)).scalar_one()
        return len(n), (state or {}).get("full", {}).get("segments", {}).get("invoices", {}).get("after")

    try:
        monkeypatch.setattr(sync_module, "TX_SECONDS", 3600.0)
        writer._write([("invoices", sync_module.Page([dict(o) for o in first], first[-1]["id"], True))])
        writer._write([("invoices", sync_module.Page([dict(o) for o in second], second[-1]["id"], True))])
        writer._settle()  # nothing committed yet: nothing to wait for
        assert writer.tx is not None and stored() == (0, None) and counted == []
        monkeypatch.setattr(sync_module, "TX_SECONDS", 0.0)  # due now: the next write commits all three pages
        writer._write([("invoices", sync_module.Page([], second[-1]["id"], False))])
        assert writer.tx is None
        if separate:
            assert counted == []  # sent, and counted once the child says it is committed
            writer._settle()
        assert stored() == (5, second[-1]["id"])
        assert counted == [("invoices", 3), ("invoices", 5), ("invoices", 5)]
    finally:
        if writer.writer is not None:
            writer.writer.close()


def test_a_full_sync_leaves_postgresql_statistics_of_what_it_stored(
    pg_engine: Engine, server: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild after a first sync plans its reads by customer with statistics of the full tables (without
    them PostgreSQL walks the whole account for each batch); the tables the fixture emptied have none."""
    monkeypatch.setattr(sync_module, "ANALYZE_FIRST", 10**9)  # only the sync's final refresh
    names = [t.name for t in (*LIST_TABLES.values(), *CHILD_TABLES.values())]
    query = text("SELECT reltuples FROM pg_class WHERE relname = :name")
    with pg_engine.connect() as conn:
        assert {conn.execute(query, {"name": name}).scalar_one() for name in names} == {-1}

    syncer(pg_engine, new_account(pg_engine, server), server).run()

    with pg_engine.connect() as conn:
        for name in names:
            rows = conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()  # noqa: S608
            assert (name, conn.execute(query, {"name": name}).scalar_one()) == (name, rows)


def stored_items(engine: Engine, account_id: int, sub_id: str) -> list[str]:
    items = table_of(StripeSubscriptionItem)
    query = select(items.c.id).where(items.c.account_id == account_id, items.c.subscription_id == sub_id)
    with engine.connect() as conn:
        return sorted(conn.execute(query).scalars())


def test_subscription_items_past_the_embedded_list_are_fetched(
    engine: Engine, server: FakeStripe, world: StripeWorld
) -> None:
    """A subscription embeds its first items (`items.has_more`); full and incremental syncs store them all."""
    price = b.price("price_many", "prod_many", 100)
    now = int(time.time())
    many = [b.subscription_item(f"si_many_{n:02d}", "sub_many", price, quantity=n + 1) for n in range(23)]
    world.add_all(
        [b.product("prod_many", "Many"), price, b.subscription("sub_many", "cus_00001", many, created=10)]
    )
    account_id = new_account(engine, server)
    syncer(engine, account_id, server).run()
    assert stored_items(engine, account_id, "sub_many") == [i["id"] for i in many]
    assert server.request_count("/v1/subscription_items?") == 1  # 23 items: 10 embedded, 13 in one page
    # a new subscription with many items, found by the incremental sync's created filter
    more = [b.subscription_item(f"si_more_{n:02d}", "sub_more", price) for n in range(12)]
    world.add(b.subscription("sub_more", "cus_00002", more, created=now))
    outcome = syncer(engine, account_id, server).run()
    assert outcome.mode == "incremental"
    assert stored_items(engine, account_id, "sub_more") == [i["id"] for i in more]
    assert_everything_stored(engine, account_id, world)


def deletion_marks(engine: Engine, account_id: int, table: type, ids: list[str]) -> dict[str, tuple]:  # type: ignore[type-arg]
    t = table_of(table)
    query = select(t.c.id, t.c.deleted, t.c.deleted_at).where(t.c.account_id == account_id, t.c.id.in_(ids))
    with engine.connect() as conn:
        return {r.id: (r.deleted, r.deleted_at) for r in conn.execute(query)}


def test_a_full_sync_marks_what_stripe_no_longer_lists_as_deleted(
    engine: Engine, server: FakeStripe, world: StripeWorld
) -> None:
    account_id = synced_account(engine, server)
    before = counts(engine, account_id)
    world.delete_customer("cus_00005")  # Stripe: retrievable as {"deleted": true}, never listed
    world.remove("subscription", "sub_00008")  # gone from every list (e.g. test data removed)
    incremental = syncer(engine, account_id, server).run()
    assert incremental.mode == "incremental" and incremental.deleted == {}  # no event: it cannot know
    started = int(time.time())
    outcome = syncer(engine, account_id, server).run(full=True)
    assert outcome.deleted == {"customers": 1, "subscriptions": 1}
    customers = deletion_marks(engine, account_id, StripeCustomer, ["cus_00005", "cus_00006"])
    subs = deletion_marks(engine, account_id, StripeSubscription, ["sub_00008", "sub_00009"])
    assert customers["cus_00006"] == (False, None) and subs["sub_00009"] == (False, None)
    for deleted, deleted_at in (customers["cus_00005"], subs["sub_00008"]):
        assert deleted is True and started - 5 <= deleted_at <= started + 5
    assert counts(engine, account_id) == before  # kept, not removed
    with engine.connect() as conn:
        name = conn.execute(
            select(table_of(StripeCustomer).c.name).where(table_of(StripeCustomer).c.id == "cus_00005")
        ).scalar()
    assert name == "Customer 5"
    again = syncer(engine, account_id, server).run(full=True)
    assert again.deleted == {"customers": 0, "subscriptions": 0}  # marked once
    # Stripe lists it again (a wrong guess is corrected by the next full sync)
    world.add(b.subscription("sub_00008", "cus_00008", [], created=T0 + 8 * 3600))
    syncer(engine, account_id, server).run(full=True)
    assert deletion_marks(engine, account_id, StripeSubscription, ["sub_00008"]) == {
        "sub_00008": (False, None)
    }


def test_an_interrupted_full_sync_marks_nothing_until_it_completes(
    engine: Engine, server: FakeStripe, world: StripeWorld
) -> None:
    account_id = synced_account(engine, server)
    world.delete_customer("cus_00005")
    server.inject(
        *[Fault(status=500, headers={"Stripe-Should-Retry": "false"}, path_prefix="/v1/invoices")] * 10
    )
    with pytest.raises(StripeReadError):
        syncer(engine, account_id, server).run(full=True)
    assert deletion_marks(engine, account_id, StripeCustomer, ["cus_00005"]) == {"cus_00005": (False, None)}
    server.faults.clear()  # Stripe is back
    resumed = syncer(engine, account_id, server).run()
    assert resumed.resumed and resumed.deleted == {"customers": 1, "subscriptions": 0}


def test_a_second_sync_changes_nothing(engine: Engine, server: FakeStripe) -> None:
    account_id = synced_account(engine, server)
    first = snapshot(engine, account_id)
    syncer(engine, account_id, server).run(full=True)
    assert snapshot(engine, account_id) == first
    outcome = syncer(engine, account_id, server).run()
    assert outcome.mode == "incremental"
    assert snapshot(engine, account_id) == first


def test_older_api_shapes_give_the_same_normalized_columns(engine: Engine) -> None:
    current, legacy = build_world(customers=10, months=3), build_world(customers=10, months=3, legacy=True)
    cols = (
        "id",
        "invoice_id",
        "customer_id",
        "subscription_id",
        "subscription_item_id",
        "price_id",
        "product_id",
        "amount",
        "discount_total",
        "inclusive_tax",
        "quantity",
        "period_start",
        "period_end",
        "proration",
    )
    found = []
    for n, world in enumerate((current, legacy)):
        with FakeStripe(world) as fake:
            account_id = new_account(engine, fake, name=f"shape{n}")
            syncer(engine, account_id, fake).run()
        lines = table_of(StripeInvoiceLine)
        with engine.connect() as conn:
            found.append(
                sorted(
                    conn.execute(
                        select(*(lines.c[c] for c in cols)).where(lines.c.account_id == account_id)
                    ).all()
                )
            )
        subs = table_of(StripeSubscription)
        with engine.connect() as conn:
            found.append(
                sorted(
                    conn.execute(
                        select(subs.c.id, subs.c.current_period_start, subs.c.current_period_end).where(
                            subs.c.account_id == account_id
                        )
                    ).all()
                )
            )
    assert found[0] == found[2] and found[1] == found[3]
    assert len(found[0]) == sum(len(v) for v in current.invoice_lines.values())


def test_incremental_on_an_unchanged_account_costs_a_handful_of_requests(
    engine: Engine, server: FakeStripe
) -> None:
    account_id = synced_account(engine, server)
    before = len(server.requests)
    outcome = syncer(engine, account_id, server).run()
    assert outcome.mode == "incremental"
    assert len(server.requests) - before <= 8  # events + one created-filtered page per list


def test_incremental_picks_up_changes_through_events(
    engine: Engine, server: FakeStripe, world: StripeWorld
) -> None:
    account_id = synced_account(engine, server)
    now = int(time.time())
    newcomer = world.add(b.customer("cus_new", "Newcomer", created=now))
    quiet = world.add(b.customer("cus_quiet", "No event", created=now))  # found by the created filter alone
    invoice = world.get("invoice", "in_00002_01")
    assert invoice is not None and invoice["status"] == "paid"
    world.add({**invoice, "status": "void"})
    sub = world.get("subscription", "sub_00004")
    assert sub is not None
    world.add({**sub, "cancel_at_period_end": True})
    world.delete_customer("cus_00009")
    world.add_all(
        [
            b.event("evt_1", "customer.created", newcomer, now),
            b.event("evt_2", "invoice.voided", {**invoice, "status": "void"}, now),
            b.event("evt_3", "customer.subscription.updated", {**sub, "cancel_at_period_end": True}, now),
            b.event("evt_4", "customer.deleted", {"id": "cus_00009", "object": "customer"}, now),
        ]
    )
    before = len(server.requests)
    outcome = syncer(engine, account_id, server).run()
    assert outcome.mode == "incremental"
    assert len(server.requests) - before <= 12
    with engine.connect() as conn:
        cus = table_of(StripeCustomer)
        names = dict(
            conn.execute(select(cus.c.id, cus.c.name).where(cus.c.id.in_(["cus_new", "cus_quiet"]))).all()
        )
        deleted = conn.execute(select(cus.c.deleted, cus.c.name).where(cus.c.id == "cus_00009")).one()
        inv = table_of(StripeInvoice)
        status = conn.execute(select(inv.c.status).where(inv.c.id == "in_00002_01")).scalar()
        subs = table_of(StripeSubscription)
        cape = conn.execute(select(subs.c.cancel_at_period_end).where(subs.c.id == "sub_00004")).scalar()
    assert names == {"cus_new": "Newcomer", "cus_quiet": quiet["name"]}
    assert tuple(deleted) == (True, "Customer 9")  # marked deleted, not removed, name kept
    assert (status, cape) == ("void", True)


class _Overlapping(FakeStripe):
    """The local server, each read of one object held a moment: how many were in flight at once."""

    def __init__(self, world: StripeWorld) -> None:
        super().__init__(world)
        self.in_flight = self.peak = 0
        self._count_lock = threading.Lock()

    def route(self, path: str, query: dict[str, list[str]], key: str) -> tuple[int, Any]:
        if not path.startswith("/v1/invoices/in_"):
            return super().route(path, query, key)
        with self._count_lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(0.02)
            return super().route(path, query, key)
        finally:
            with self._count_lock:
                self.in_flight -= 1


def test_changed_objects_are_read_again_several_at_once_and_stored_a_page_at_a_time(
    engine: Engine, world: StripeWorld
) -> None:
    """A night after many changes: each changed invoice is read once, several reads in flight, and they are
    stored in a transaction per page of objects rather than one each."""
    with _Overlapping(world) as server:
        account_id = synced_account(engine, server)
        now = int(time.time())
        paid = sorted(i for i, inv in world.collections["invoice"].by_id.items() if inv["status"] == "paid")
        changed = paid[:130]
        for n, invoice_id in enumerate(changed):
            invoice = world.get("invoice", invoice_id)
            assert invoice is not None
            voided = world.add({**invoice, "status": "void"})
            world.add(b.event(f"evt_void_{n}", "invoice.voided", voided, now))
        commits: list[object] = []
        count = commits.append  # one bound method, to remove what was listened with
        event.listen(engine, "commit", count)
        before = len(server.requests)
        try:
            outcome = syncer(engine, account_id, server, workers=4).run()
        finally:
            event.remove(engine, "commit", count)
    assert outcome.mode == "incremental"
    reads = [path for _, path in server.requests[before:] if path.startswith("/v1/invoices/in_")]
    assert sorted(p for p in reads if "/lines" not in p) == [f"/v1/invoices/{i}" for i in changed]
    assert server.peak >= 2
    assert len(commits) <= 10  # 130 objects: two pages, the events' and the lists' few
    with engine.connect() as conn:
        inv = table_of(StripeInvoice)
        statuses = set(conn.execute(select(inv.c.status).where(inv.c.id.in_(changed))).scalars())
    assert statuses == {"void"}


def test_a_stale_events_cursor_falls_back_to_full_and_says_so(
    engine: Engine, server: FakeStripe, world: StripeWorld
) -> None:
    account_id = synced_account(engine, server)
    state = table_of(SyncState)
    with engine.begin() as conn:
        conn.execute(
            update(state)
            .where(state.c.account_id == account_id)
            .values(events_cursor_created=int(time.time()) - 31 * 86400)
        )
    outcome = syncer(engine, account_id, server).run()
    assert outcome.mode == "full" and "30 days" in outcome.note
    assert_everything_stored(engine, account_id, world)


def test_malformed_objects_are_listed_and_the_rest_is_stored(
    engine: Engine, server: FakeStripe, world: StripeWorld
) -> None:
    account_id = synced_account(engine, server)
    before = snapshot(engine, account_id)
    world.add({**b.customer("cus_00001", "Renamed"), "created": "not a number"})  # was fine, now broken
    world.add({"id": "cus_nocreated", "object": "customer", "name": "x"})
    bad_invoice = b.invoice("in_bad", "cus_00002", [b.line("il_bad_1", "in_bad", 100, (1, 2))], created=5)
    del bad_invoice["customer"]
    world.add(bad_invoice)
    outcome = syncer(engine, account_id, server).run(full=True)
    rejected = {(r["object"], r["id"]) for r in outcome.rejected}
    assert rejected == {("customer", "cus_00001"), ("customer", "cus_nocreated"), ("invoice", "in_bad")}
    assert all(r["error"] for r in outcome.rejected)
    after = snapshot(engine, account_id)
    assert after == before  # nothing already stored was lost or overwritten by the broken copy
    with engine.connect() as conn:
        state = conn.execute(select(table_of(SyncState).c.rejected)).scalar()
    assert {(r["object"], r["id"]) for r in state} == rejected


def test_429s_500s_and_dropped_connections_are_survived(
    engine: Engine, server: FakeStripe, world: StripeWorld
) -> None:
    server.inject(
        Fault(status=429),
        Fault(status=429),
        Fault(status=500),
        Fault(drop=True),
        Fault(status=503, path_prefix="/v1/invoices"),
        Fault(drop=True, path_prefix="/v1/invoices/"),
    )
    account_id = new_account(engine, server)
    outcome = syncer(engine, account_id, server).run()
    assert server.faults == []  # every fault was hit, and retried
    assert outcome.mode == "full"
    assert_everything_stored(engine, account_id, world)


def fail_storing_invoices(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Make the writer fail (ours, not Stripe's) on the first invoice page, committing only as lists end;
    the real store_page is returned, to be put back."""
    monkeypatch.setattr(sync_module, "TX_SECONDS", 3600.0)
    store_page = sync_module.store_page

    def failing(conn: Connection, account_id: int, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "invoices":
            raise RuntimeError("disk full")
        return store_page(conn, account_id, name, *args, **kwargs)

    monkeypatch.setattr(sync_module, "store_page", failing)
    return store_page


def test_a_failure_of_the_writer_rolls_back_its_open_transaction_and_the_next_run_resumes(
    engine: Engine, server: FakeStripe, world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while storing (ours, not Stripe's) drops the open transaction's pages with their cursors:
    what stays committed is consistent (a list has rows exactly when its cursor moved), and the next run
    resumes from it to exactly a clean sync's rows."""
    store_page = fail_storing_invoices(monkeypatch)
    account_id = new_account(engine, server)
    with pytest.raises(RuntimeError, match="disk full"):
        syncer(engine, account_id, server, workers=2).run()
    with engine.connect() as conn:
        segments = conn.execute(select(table_of(SyncState).c.checkpoint)).scalar()["full"]["segments"]
    stored = counts(engine, account_id)
    assert segments["customers"]["done"] is True and stored["customers"] == len(world.collections["customer"])
    assert stored["invoices"] == 0
    assert {seg["after"] for seg in segments.values() if seg["list"] == "invoices"} == {None}
    assert (stored["subscriptions"] > 0) == (segments["subscriptions"]["after"] is not None)

    monkeypatch.setattr(sync_module, "store_page", store_page)
    assert_resumes_to_a_clean_sync(engine, server, world, account_id)


def assert_resumes_to_a_clean_sync(
    engine: Engine, server: FakeStripe, world: StripeWorld, account_id: int
) -> None:
    """The next run resumes the interrupted full sync and ends with exactly the rows of a clean one (written
    in the sync's own process, whichever way the resumed one writes)."""
    outcome = syncer(engine, account_id, server).run()
    assert outcome.resumed and outcome.mode == "full"
    assert_everything_stored(engine, account_id, world)
    clean = new_account(engine, server, name="clean")
    syncer(engine, clean, server, separate_writer=False).run()
    assert snapshot(engine, account_id) == snapshot(engine, clean)


def test_a_failed_run_keeps_its_checkpoint_and_the_next_run_resumes(
    engine: Engine, server: FakeStripe, world: StripeWorld
) -> None:
    account_id = new_account(engine, server)
    server.inject(*[Fault(status=500, path_prefix="/v1/invoices") for _ in range(40)])
    with pytest.raises(StripeReadError):
        syncer(engine, account_id, server, workers=2).run()
    with engine.connect() as conn:
        checkpoint = conn.execute(select(table_of(SyncState).c.checkpoint)).scalar()
    assert checkpoint["full"]["segments"]["customers"]["done"] is True
    server.faults.clear()
    customer_pages_before = server.request_count("/v1/customers")
    outcome = syncer(engine, account_id, server).run()
    assert outcome.resumed and outcome.mode == "full"
    assert server.request_count("/v1/customers") == customer_pages_before  # customers were not fetched again
    assert_everything_stored(engine, account_id, world)
    clean = new_account(engine, server, name="clean")
    syncer(engine, clean, server).run()
    assert snapshot(engine, account_id) == snapshot(engine, clean)
