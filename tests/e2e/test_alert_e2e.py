"""A whole alert night on the sample company: local Stripe -> sync -> rebuild -> at-risk -> Slack digest;
and a nightly run that stores the backtest, whose track records the Slack alerts then carry.

The accounts the digest must name are worked out from the Stripe objects themselves (scheduled cancellations,
open invoices with a failed attempt), not from the at-risk code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy.engine import Engine

from integrations.stripe.models import SyncState
from tests.support.slack_server import FakeSlack
from tests.support.stripe_world import add_account
from worker.alerts import run_alerts
from worker.backtest_store import stored_backtest, track_records
from worker.db import session_scope
from worker.demo.sample import build_sample_world
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.models import Account
from worker.mrr_queries import mrr_at
from worker.nightly import run_nightly
from worker.nightly_steps import NightContext
from worker.rebuild import rebuild_account
from worker.risk import at_risk
from worker.secrets import Secret, encrypt
from worker.settings import get_settings
from worker.syncing import run_sync

END = date(2026, 11, 1)
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def expected_from_world(world: StripeWorld) -> tuple[set[str], set[str]]:
    """(customers with a cancellation scheduled, customers with an unpaid invoice whose payment failed) as of
    AS_OF, a month before the sync: what was asked for by then, what was attempted and not paid by then."""
    now = int(AS_OF.timestamp())
    cancelling = {
        s["customer"]
        for s in world.collections["subscription"].by_id.values()
        if (s["cancel_at_period_end"] or s["cancel_at"] or (s["ended_at"] or 0) > (s["canceled_at"] or 0))
        and s["canceled_at"] is not None
        and s["canceled_at"] <= now < (s["cancel_at"] or s["ended_at"] or now + 1)
    }
    failing = set()
    for inv in world.collections["invoice"].by_id.values():
        moments = inv["status_transitions"]
        settled = moments["paid_at"] or moments["voided_at"] or moments["marked_uncollectible_at"]
        tried = moments["finalized_at"] is not None and moments["finalized_at"] < now
        failed = inv["attempt_count"] > (1 if inv["status"] == "paid" else 0)
        if tried and failed and (settled is None or settled > now) and inv["amount_due"] > 0:
            failing.add(inv["customer"])
    return cancelling, failing


def named(payload: dict, code: str | None = None) -> set[str]:
    out = set()
    for block in payload["blocks"]:
        text = block["text"]["text"]
        if block["type"] != "section" or "`cus_" not in text:
            continue
        if code is None or f"*{code}*" in text:
            out.add(text.split("`")[1])
    return out


def with_webhook(engine: Engine, account: Account, url: str) -> Account:
    """The account with its own Slack webhook stored (encrypted, as `connect --slack-webhook` stores it)."""
    with session_scope(engine) as session:
        row = session.get(Account, account.id)
        assert row is not None
        row.slack_webhook_encrypted = encrypt(get_settings(), Secret(url))
        session.add(row)
        session.flush()
        session.refresh(row)
        session.expunge(row)
    return row


def test_an_alert_night_names_the_right_accounts(engine: Engine, slack: FakeSlack) -> None:
    world = build_sample_world(seed=7, customers=300, months=18, end=END)
    cancelling, failing = expected_from_world(world)
    with FakeStripe(world) as fake:
        account = with_webhook(engine, add_account(engine, fake.url), slack.url)
        synced = run_sync(engine, get_settings(), account, full=True)
        assert synced.ok
        with session_scope(engine) as session:  # the sample's "now" is END: the sync describes that day
            state = session.get(SyncState, account.id)
            assert state is not None
            state.last_sync_at = int(AS_OF.timestamp())
            session.add(state)
        rebuild_account(engine, account, today=END)
        result = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
        assert fake.writes == []
    assert result.error is None and result.pending == 0
    with engine.connect() as conn:
        paying = {c.customer_id for c in mrr_at(conn, account.id or 0, AS_OF)}
    ranked = at_risk(engine, account, AS_OF)["accounts"]
    flagged = {a["customer_id"]: {s["code"] for s in a["signals"]} for a in ranked}
    assert cancelling & paying and failing & paying  # the sample holds both cases
    assert all("cancel_scheduled" in flagged[c] for c in cancelling & paying)
    assert all("payment_failed" in flagged[c] for c in failing & paying)
    [message] = slack.delivered
    assert len(message["blocks"]) <= 50
    # the ten highest scores in full, each with its signals; the rest summed up with where to see them
    assert named(message) == {a["customer_id"] for a in ranked[:10]}
    for a in ranked[:10]:
        for code in flagged[a["customer_id"]]:
            assert a["customer_id"] in named(message, code)
    rest = len(ranked) - 10
    assert rest > 0 and f"and {rest} more new or changed accounts at risk" in message["text"]
    assert "`retention at-risk" in message["text"]
    assert set(flagged) <= paying
    assert result.sent == len(ranked)  # the summed-up ones were told too: not repeated tomorrow
    # the next night, with nothing changed, posts nothing
    before = len(slack.posts)
    again = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert again.sent == 0 and len(slack.posts) == before


def test_a_nightly_run_stores_the_backtest_and_alerts_carry_track_records(
    engine: Engine, slack: FakeSlack
) -> None:
    world = build_sample_world(seed=7, customers=300, months=24, end=END)
    with FakeStripe(world) as fake:
        account = with_webhook(engine, add_account(engine, fake.url), slack.url)
        result = run_nightly(NightContext(engine, get_settings(), account, AS_OF), trigger="manual")
    assert result.ok, result.error
    assert list(result.steps) == ["sync", "rebuild", "metrics", "backtest", "alerts"]
    stored = stored_backtest(engine, account, AS_OF)
    assert stored is not None and stored.as_of == END and stored.flags > 0
    assert result.steps["backtest"]["detail"]["precision"] == stored.precision
    records = track_records(stored)
    assert records  # 24 months of history give signals with 5+ past cases
    [message] = slack.delivered
    told = 0
    for block in message["blocks"][2:]:
        for line in block["text"]["text"].splitlines():
            code = line.split("*")[1] if line.startswith("• *") else None
            if code in records:
                record = records[code]
                assert line.endswith(
                    f"({record.hits} of {record.flags} accounts with this signal churned or contracted "
                    "within 120 days)"
                )
                told += 1
    assert told > 0
