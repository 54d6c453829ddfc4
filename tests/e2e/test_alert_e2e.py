"""A whole alert night on the sample company: local Stripe -> sync -> rebuild -> at-risk -> Slack digest.

The accounts the digest must name are worked out from the Stripe objects themselves (scheduled cancellations,
open invoices with a failed attempt), not from the at-risk code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy.engine import Engine

from tests.support.slack_server import FakeSlack
from tests.support.stripe_world import add_account
from worker.alerts import run_alerts
from worker.db import session_scope
from worker.demo.sample import build_sample_world
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.models import Account
from worker.mrr_queries import mrr_at
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
    """(customers with a cancellation scheduled, customers with an open invoice whose payment failed)."""
    now = int(AS_OF.timestamp())
    cancelling = {
        s["customer"]
        for s in world.collections["subscription"].by_id.values()
        if s["status"] in ("active", "past_due", "trialing")
        and (s["cancel_at_period_end"] or s["cancel_at"])
        and (s["canceled_at"] or 0) <= now
    }
    failing = {
        i["customer"]
        for i in world.collections["invoice"].by_id.values()
        if i["status"] == "open" and i["attempt_count"] > 0 and i["created"] <= now
    }
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


def test_an_alert_night_names_the_right_accounts(engine: Engine, slack: FakeSlack) -> None:
    world = build_sample_world(seed=7, customers=150, months=18, end=END)
    cancelling, failing = expected_from_world(world)
    with FakeStripe(world) as fake:
        account = add_account(engine, fake.url)
        with session_scope(engine) as session:
            row = session.get(Account, account.id)
            assert row is not None
            row.slack_webhook_encrypted = encrypt(get_settings(), Secret(slack.url))
            session.add(row)
            session.flush()
            session.refresh(row)
            session.expunge(row)
            account = row
        synced = run_sync(engine, get_settings(), account, full=True)
        assert synced.ok
        rebuild_account(engine, account, today=END)
        result = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
        assert fake.writes == []
    assert result.error is None and result.pending == 0
    with engine.connect() as conn:
        paying = {c.customer_id for c in mrr_at(conn, account.id or 0, AS_OF)}
    assert cancelling & paying and failing & paying  # the sample holds both cases
    posted: set[str] = set()
    for message in slack.delivered:
        assert len(message["blocks"]) <= 50
        posted |= named(message)
        assert (cancelling & paying & named(message)) <= named(message, "cancel_scheduled")
        assert (failing & paying & named(message)) <= named(message, "payment_failed")
    assert cancelling & paying <= posted
    assert failing & paying <= posted
    # every account the digest names is a paying at-risk account, and every one of them is named
    expected = {a["customer_id"] for a in at_risk(engine, account, AS_OF)["accounts"]}
    assert posted == expected and posted <= paying
    assert result.sent == len(expected)
    # the next night, with nothing changed, posts nothing
    before = len(slack.posts)
    again = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert again.sent == 0 and len(slack.posts) == before
