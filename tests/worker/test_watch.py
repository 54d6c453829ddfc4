"""The same-day watch tick against a local Stripe server and a local Slack webhook, on both databases.

The account (tests/support/watch_world.py): customer k pays (k + 1) x $10, so with ten customers the default
urgent floor (the top fifth) is $90: customers 8 and 9 are "large", the others are not.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from integrations.stripe.models import SyncState
from metrics.dbapi import reader_of
from metrics.tables import table_of
from tests.support.slack_server import Answer, FakeSlack
from tests.support.watch_world import (
    DAY,
    build_paying_world,
    connect_synced,
    now,
    schedule_cancel,
    withdraw_cancel,
)
from worker.alert_state import SENT, WATCH, AlertState
from worker.alerts import run_alerts
from worker.demo.stripe_server import FakeStripe, Fault, StripeWorld
from worker.locks import account_lock
from worker.models import Account
from worker.mrr_queries import has_snapshots
from worker.rebuild import ledger_is_stale
from worker.settings import get_settings
from worker.status import account_status
from worker.syncing import run_sync
from worker.watch import TickResult, run_tick, to_minor, urgent_floor
from worker.watch_state import ALERTED, APPLIED, FAILED, FULL, QUIET, SKIPPED


@pytest.fixture
def stripe_world() -> StripeWorld:
    return build_paying_world(names={9: "Big & <Co>"})


@pytest.fixture
def account(engine: Engine, fake_stripe: FakeStripe, fake_slack: FakeSlack) -> Account:
    return connect_synced(engine, fake_stripe.url, fake_slack.url)


def tick(engine: Engine, account: Account) -> TickResult:
    return run_tick(engine, get_settings(), account, pause=0)


def texts(payload: dict[str, Any]) -> str:
    return "\n".join(b["text"]["text"] for b in payload["blocks"])


def test_a_quiet_tick_costs_one_request_and_posts_nothing(
    engine: Engine, account: Account, fake_stripe: FakeStripe, fake_slack: FakeSlack
) -> None:
    before = len(fake_stripe.requests)
    result = tick(engine, account)
    assert result.outcome == QUIET and result.ok
    assert result.requests == 1 == len(fake_stripe.requests) - before
    assert fake_stripe.requests[-1][1].startswith("/v1/events?")
    assert fake_slack.posts == []


def test_a_large_cancellation_reaches_slack_in_one_tick_and_only_once(
    engine: Engine,
    account: Account,
    stripe_world: StripeWorld,
    fake_stripe: FakeStripe,
    fake_slack: FakeSlack,
) -> None:
    at = now()
    schedule_cancel(stripe_world, 9, at)
    result = tick(engine, account)
    assert (result.outcome, result.events, result.alerts, result.pending) == (ALERTED, 1, 1, 0)
    assert result.requests == 2  # the events, then the subscription re-read
    assert len(fake_slack.delivered) == 1
    body = texts(fake_slack.delivered[0])
    assert "Big &amp; &lt;Co&gt;" in body and "Big & <Co>" not in body  # escaped user data
    assert "`cus_00009`" in body and "$100.00" in body and "*cancel_scheduled*" in body
    assert "https://dashboard.stripe.com/test/customers/cus_00009" in body
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")
    assert f"customer.subscription.updated at {when} UTC" in body
    # the next tick re-reads the overlap, skips the event it applied, posts nothing
    again = tick(engine, account)
    assert (again.outcome, again.events, again.events_skipped, again.requests) == (QUIET, 0, 1, 1)
    assert len(fake_slack.posts) == 1


def test_a_small_account_waits_for_the_digest(
    engine: Engine, account: Account, stripe_world: StripeWorld, fake_slack: FakeSlack
) -> None:
    schedule_cancel(stripe_world, 1)  # $20 MRR, below the $90 floor
    result = tick(engine, account)
    assert (result.outcome, result.customers, result.alerts) == (APPLIED, 1, 0)
    assert fake_slack.posts == []


def test_urgent_mrr_setting_overrides_the_top_fifth(
    engine: Engine,
    account: Account,
    stripe_world: StripeWorld,
    fake_slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert urgent_floor(engine, get_settings(), account, datetime.now(UTC)) == 9 * 1000
    monkeypatch.setenv("RETENTION_URGENT_MRR", "20")
    assert urgent_floor(engine, get_settings(), account, datetime.now(UTC)) == 2000
    schedule_cancel(stripe_world, 1)
    assert tick(engine, account).alerts == 1
    assert "`cus_00001`" in texts(fake_slack.delivered[0])


def test_the_next_digest_lists_it_as_already_alerted_and_never_repeats_it(
    engine: Engine, account: Account, stripe_world: StripeWorld, fake_slack: FakeSlack
) -> None:
    schedule_cancel(stripe_world, 9)
    schedule_cancel(stripe_world, 1)  # small: left to the digest
    assert tick(engine, account).alerts == 1
    assert run_sync(engine, get_settings(), account).ok  # the nightly's incremental: nothing doubled
    digest = run_alerts(engine, get_settings(), account, datetime.now(UTC), pause=0)
    assert digest.error is None
    night = fake_slack.delivered[1:]
    assert len(night) == 1
    sections = [b["text"]["text"] for b in night[0]["blocks"] if b["type"] == "section"]
    alerted = [s for s in sections if s.startswith("*<")]
    assert len(alerted) == 1 and "`cus_00001`" in alerted[0]  # the small one, alerted in full
    assert "`cus_00009`" not in alerted[0]
    assert sections[-1].startswith("*Already alerted today*") and "`cus_00009`" in sections[-1]
    # the night after, nothing is new: nothing is posted, not even the "already alerted" line
    assert run_alerts(engine, get_settings(), account, datetime.now(UTC), pause=0).messages == 0
    assert len(fake_slack.posts) == 2


def test_slack_down_then_up_delivers_exactly_once(
    engine: Engine, account: Account, stripe_world: StripeWorld, fake_slack: FakeSlack
) -> None:
    fake_slack.script(Answer(500, "down"), Answer(500, "down"), Answer(500, "down"))
    schedule_cancel(stripe_world, 8)
    down = tick(engine, account)
    assert (down.alerts, down.pending) == (0, 1) and down.error and "500" in down.error
    assert fake_slack.delivered == []
    with engine.connect() as conn:
        shown = account_status(reader_of(conn), account.id or 0, account.name)["last_watch"]
    assert (shown["pending"], shown["ok"]) == (1, False) and "500" in shown["error"]
    up = tick(engine, account)  # a quiet tick delivers what is waiting
    assert (up.events, up.alerts, up.pending, up.error) == (0, 1, 0, None)
    assert len(fake_slack.delivered) == 1 and "`cus_00008`" in texts(fake_slack.delivered[0])
    assert "customer.subscription.updated at" in texts(fake_slack.delivered[0])  # the stored events
    assert tick(engine, account).alerts == 0
    run_alerts(engine, get_settings(), account, datetime.now(UTC), pause=0)
    assert (
        sum("`cus_00008`" in texts(p) for p in fake_slack.delivered) == 2
    )  # the alert, then "already alerted"
    assert "Already alerted today" in texts(fake_slack.delivered[-1])


def test_slack_down_until_the_digest_the_digest_delivers_it_once(
    engine: Engine, account: Account, stripe_world: StripeWorld, fake_slack: FakeSlack
) -> None:
    fake_slack.script(*[Answer(503, "down")] * 3)
    schedule_cancel(stripe_world, 9)
    assert tick(engine, account).pending == 1
    digest = run_alerts(engine, get_settings(), account, datetime.now(UTC), pause=0)
    assert digest.sent == 1 and len(fake_slack.delivered) == 1
    assert "*cancel_scheduled*" in texts(fake_slack.delivered[0])
    assert tick(engine, account).alerts == 0 and len(fake_slack.posts) == 4


def test_a_withdrawn_cancellation_is_reported_once(
    engine: Engine, account: Account, stripe_world: StripeWorld, fake_slack: FakeSlack
) -> None:
    schedule_cancel(stripe_world, 9)
    assert tick(engine, account).alerts == 1
    withdraw_cancel(stripe_world, 9)
    result = tick(engine, account)
    assert result.recoveries == 1
    assert "cancellation withdrawn" in texts(fake_slack.delivered[1])
    assert tick(engine, account).recoveries == 0 and len(fake_slack.posts) == 2


def test_a_failed_payment_alerts_and_its_recovery_is_reported(
    engine: Engine, account: Account, stripe_world: StripeWorld, fake_slack: FakeSlack
) -> None:
    at = now()
    stripe_world.change(
        "invoice", "in_00009_1", "invoice.payment_failed", at, status="open", attempt_count=1, paid=False
    )
    stripe_world.change("subscription", "sub_00009", "customer.subscription.updated", at, status="past_due")
    assert tick(engine, account).alerts == 1
    assert "*payment_failed*" in texts(fake_slack.delivered[0])
    stripe_world.change("invoice", "in_00009_1", "invoice.paid", at + 1, status="paid", paid=True)
    stripe_world.change("subscription", "sub_00009", "customer.subscription.updated", at + 1, status="active")
    assert tick(engine, account).recoveries == 1
    assert "payment succeeded" in texts(fake_slack.delivered[1])


def test_a_tick_while_the_nightly_holds_the_lock_is_skipped(
    engine: Engine,
    account: Account,
    stripe_world: StripeWorld,
    fake_stripe: FakeStripe,
    fake_slack: FakeSlack,
) -> None:
    schedule_cancel(stripe_world, 9)
    before = len(fake_stripe.requests)
    holding, release = threading.Event(), threading.Event()

    def night() -> None:  # another thread: the lock is re-entrant within one thread's runs only
        with account_lock(get_settings(), engine, account, "nightly"):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=night)
    holder.start()
    try:
        assert holding.wait(30)
        result = tick(engine, account)
    finally:
        release.set()
        holder.join(30)
    # the holder is named as worker/locks.py reads it (on PostgreSQL its label was once seen a moment stale)
    assert (
        result.outcome == SKIPPED
        and " started " in result.note
        and "holds this account's lock" in result.note
    )
    assert len(fake_stripe.requests) == before and fake_slack.posts == []
    with engine.connect() as conn:
        assert (
            account_status(reader_of(conn), account.id or 0, account.name)["last_watch"]["outcome"] == SKIPPED
        )
    assert tick(engine, account).alerts == 1  # the event was not lost


def test_a_stale_cursor_takes_the_full_path_without_an_alert_storm(
    engine: Engine, account: Account, stripe_world: StripeWorld, fake_slack: FakeSlack
) -> None:
    for k in (8, 9):  # changes made while the cursor was stale (not in the last minutes' overlap)
        schedule_cancel(stripe_world, k, now() - 3600)
    state = table_of(SyncState)
    with engine.begin() as conn:
        conn.execute(
            update(state)
            .where(state.c.account_id == account.id)
            .values(events_cursor_created=now() - 31 * DAY)
        )
    result = tick(engine, account)
    assert (
        result.outcome == FULL and "older than Stripe keeps" in result.note and "no same-day" in result.note
    )
    assert fake_slack.posts == []
    assert tick(engine, account).outcome == QUIET  # the cursor is current again


def test_unknown_deleted_and_unreadable_objects_do_not_stop_a_tick(
    engine: Engine, account: Account, stripe_world: StripeWorld, fake_slack: FakeSlack
) -> None:
    at = now()
    stripe_world.emit("charge.succeeded", {"id": "ch_1", "object": "charge", "customer": "cus_00009"}, at)
    gone = {"id": "sub_gone", "object": "subscription", "customer": "cus_404", "status": "canceled"}
    stripe_world.emit("customer.subscription.deleted", gone, at)  # not in Stripe any more: 404 on re-read
    stripe_world.delete_customer("cus_00002")
    stripe_world.emit("customer.deleted", {"id": "cus_00002", "object": "customer", "deleted": True}, at)
    stripe_world.emit(
        "customer.subscription.updated", {"object": "subscription", "customer": "cus_00003"}, at
    )
    stripe_world.add(
        {**stripe_world.get("subscription", "sub_00005"), "status": 42}
    )  # unparsable once re-read
    stripe_world.emit("customer.subscription.updated", {"id": "sub_00005", "object": "subscription"}, at)
    schedule_cancel(stripe_world, 9, at)
    result = tick(engine, account)
    assert result.ok and result.alerts == 1
    with engine.connect() as conn:
        rejected = {
            r["id"] for r in account_status(reader_of(conn), account.id or 0, account.name)["rejected"]
        }
    assert "sub_00005" in rejected and len(rejected) == 2  # the subscription, and the event without an id


def test_a_failed_stripe_read_is_a_failed_tick(
    engine: Engine, account: Account, fake_stripe: FakeStripe
) -> None:
    fake_stripe.inject(Fault(status=400, path_prefix="/v1/events"))  # not retried: the tick fails at once
    result = tick(engine, account)
    assert result.outcome == FAILED and not result.ok and result.error


def test_a_tick_and_the_nightly_apply_each_event_once(
    engine: Engine, account: Account, stripe_world: StripeWorld
) -> None:
    schedule_cancel(stripe_world, 8)
    first = tick(engine, account)
    schedule_cancel(stripe_world, 9)
    nightly = run_sync(engine, get_settings(), account)
    assert first.events == 1
    assert [e.customer_id for e in nightly.events] == ["cus_00009"] and nightly.events_skipped == 1
    withdraw_cancel(stripe_world, 9)
    last = tick(engine, account)
    assert (last.events, last.events_skipped) == (1, 2)


def test_to_minor_rounds_major_units() -> None:
    from decimal import Decimal

    assert to_minor(Decimal("5000"), "usd") == 500000
    assert to_minor(Decimal("12.345"), "usd") == 1235
    assert to_minor(Decimal("500"), "jpy") == 500


def test_an_alert_row_records_the_watch(engine: Engine, account: Account, stripe_world: StripeWorld) -> None:
    schedule_cancel(stripe_world, 9)
    tick(engine, account)
    with Session(engine) as session:
        row = session.get(AlertState, (account.id, "cus_00009", "cancel_scheduled"))
    assert row is not None and (row.via, row.status) == (WATCH, SENT) and row.mrr == 10000


def test_a_quiet_tick_leaves_the_last_sync_and_the_ledger_current(
    engine: Engine, account: Account, stripe_world: StripeWorld
) -> None:
    with engine.connect() as conn:
        before = account_status(reader_of(conn), account.id or 0, account.name)["last_sync_at"]
    assert tick(engine, account).outcome == QUIET
    assert not ledger_is_stale(engine, account)
    with engine.connect() as conn:
        assert account_status(reader_of(conn), account.id or 0, account.name)["last_sync_at"] == before
    time.sleep(1.1)  # sync times are whole seconds: a change in the same second as the build looks older
    schedule_cancel(stripe_world, 3)
    assert tick(engine, account).outcome == APPLIED
    assert ledger_is_stale(engine, account)  # objects changed: the next figures rebuild first


def test_an_ended_subscription_or_a_written_off_invoice_is_no_recovery(
    engine: Engine, account: Account, stripe_world: StripeWorld, fake_slack: FakeSlack
) -> None:
    schedule_cancel(stripe_world, 9)
    at = now()
    stripe_world.change("invoice", "in_00008_1", "invoice.payment_failed", at, status="open", attempt_count=1)
    assert tick(engine, account).alerts == 2
    stripe_world.change(
        "subscription",
        "sub_00009",
        "customer.subscription.deleted",
        at + 1,
        status="canceled",
        ended_at=at,  # ended now: no longer alive
    )
    stripe_world.change(
        "invoice", "in_00008_1", "invoice.marked_uncollectible", at + 1, status="uncollectible"
    )
    result = tick(engine, account)
    assert (result.events, result.recoveries) == (2, 0) and len(fake_slack.posts) == 1
    with Session(engine) as session:
        rows = session.exec(select(AlertState).where(AlertState.account_id == account.id)).all()
    assert {(r.customer_id, r.status) for r in rows} == {("cus_00008", "closed"), ("cus_00009", "closed")}


def test_an_unexpected_failure_is_a_recorded_failed_tick(
    engine: Engine, account: Account, stripe_world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr("worker.watch.pending_customers", broken)
    result = tick(engine, account)
    assert (result.outcome, result.ok, result.error) == (FAILED, False, "RuntimeError (details in the log)")
    with engine.connect() as conn:
        assert (
            account_status(reader_of(conn), account.id or 0, account.name)["last_watch"]["error"]
            == result.error
        )


def test_an_account_synced_but_never_rebuilt_gets_its_ledger_once(
    engine: Engine,
    fake_stripe: FakeStripe,
    stripe_world: StripeWorld,
    fake_slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETENTION_URGENT_MRR", "90")
    account = connect_synced(engine, fake_stripe.url, fake_slack.url, rebuild=False)  # no ledger yet
    with engine.connect() as conn:
        assert not has_snapshots(conn, account.id or 0)
    schedule_cancel(stripe_world, 9)
    assert tick(engine, account).alerts == 1  # customer 9's $100 weighed against the $90 floor
    with engine.connect() as conn:
        assert has_snapshots(conn, account.id or 0)


def test_a_recovery_slack_missed_goes_with_the_next_tick_once(
    engine: Engine, account: Account, stripe_world: StripeWorld, fake_slack: FakeSlack
) -> None:
    schedule_cancel(stripe_world, 9)
    assert tick(engine, account).alerts == 1
    withdraw_cancel(stripe_world, 9)
    fake_slack.script(*[Answer(500, "down")] * 3)
    missed = tick(engine, account)
    assert (missed.recoveries, missed.pending) == (0, 1)
    delivered = tick(engine, account)
    assert (delivered.events, delivered.recoveries, delivered.pending) == (0, 1, 0)
    assert "cancellation withdrawn" in texts(fake_slack.delivered[-1]) and len(fake_slack.delivered) == 2
    assert tick(engine, account).recoveries == 0
    assert run_alerts(engine, get_settings(), account, datetime.now(UTC), pause=0).messages == 0
