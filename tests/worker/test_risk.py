"""At-risk payloads, the churn post-mortem and meter usage over stored rows (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from integrations.stripe.meters import MeterUsage
from integrations.stripe.models import SyncState
from tests.support.risk_world import AS_OF, METERED, T, catalog, customer, load
from tests.support.stripe_rows import make_account
from tests.support.stripe_world import add_account
from worker.cli.main import app
from worker.db import ensure_schema, session_scope
from worker.demo import builders as b
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.models import Account
from worker.risk import at_risk, churned, dashboard_url, refresh_meter_usage
from worker.settings import get_settings


def test_each_customer_is_flagged_for_its_own_evidence(engine: Engine) -> None:
    account = make_account(engine)
    load(engine, account)
    payload = at_risk(engine, account, AS_OF)
    found = {a["customer_id"]: a for a in payload["accounts"]}
    # the steady customer and the customer who churned in September are not at risk
    assert set(found) == {"cus_cancel", "cus_failed", "cus_seats", "cus_usage"}
    codes = {cid: [s["code"] for s in a["signals"]] for cid, a in found.items()}
    assert codes == {
        "cus_cancel": ["cancel_scheduled", "renewal_soon"],
        "cus_failed": ["payment_failed", "renewal_soon"],
        "cus_seats": ["usage_decline", "renewal_soon"],  # a seat cut is one piece of evidence: one signal
        "cus_usage": ["usage_decline", "renewal_soon"],
    }
    seats = {s["code"]: s["detail"] for s in found["cus_seats"]["signals"]}
    assert seats["usage_decline"] == "Team: seats 10 -> 6 (highest of 90 days)"
    # no backtest stored yet: no track record
    assert all(s["track_record"] is None for a in found.values() for s in a["signals"])
    usage = found["cus_usage"]["signals"][0]["detail"]
    assert usage == (
        "API calls: billed usage 300 in the period to 2026-11-01 vs 700 average of the 3 "
        "periods before (57% lower)"
    )
    failed = found["cus_failed"]["signals"][0]["detail"]
    assert "invoice in_failed_11 for $400.00 unpaid after 2 attempts" in failed and "past_due" in failed
    cancel = found["cus_cancel"]
    assert cancel["mrr"] == 250.0 and cancel["renewal_date"] == "2026-12-01"
    assert cancel["name"] == "Cancelling Inc"
    assert cancel["dashboard_url"] == "https://dashboard.stripe.com/test/customers/cus_cancel"
    # MRR at risk x (1 - prod(1 - weight)): $400 x (1 - 0.3 x 0.8), $250 x (1 - 0.1 x 0.8),
    # $300 x (1 - 0.5 x 0.8) (seats 40% down: weight 0.3 + 0.5 x 0.4); usage: $100 seats + $3 usage carried
    # forward, weight 0.3 + 0.5 x 4/7
    assert [(a["customer_id"], a["score"]) for a in payload["accounts"]] == [
        ("cus_failed", 304.0),
        ("cus_cancel", 230.0),
        ("cus_seats", 180.0),
        ("cus_usage", 68.86),
    ]
    assert payload["mrr_at_risk"] == 400.0 + 300.0 + 250.0 + 103.0


def test_dashboard_links_follow_the_key_mode() -> None:
    live = Account(name="a", key_encrypted="x", key_mask="rk_live_...abcd", livemode=False)
    test = Account(name="b", key_encrypted="x", key_mask="sk_test_...abcd", livemode=True)
    unknown = Account(name="c", key_encrypted="x", key_mask="", livemode=True)
    assert dashboard_url(live, "cus_1") == "https://dashboard.stripe.com/customers/cus_1"
    assert dashboard_url(test, "cus_1") == "https://dashboard.stripe.com/test/customers/cus_1"
    assert dashboard_url(unknown, "cus_1") == "https://dashboard.stripe.com/customers/cus_1"


def test_churn_post_mortem_dates_the_first_signal(engine: Engine) -> None:
    account = make_account(engine)
    load(engine, account)
    payload = churned(engine, account, AS_OF)
    [gone] = payload["accounts"]
    # asked on Aug 10 to cancel at period end; the subscription ended Sep 1 with 20 seats x $50
    assert gone["customer_id"] == "cus_gone" and gone["mrr"] == 1000.0
    assert gone["churned_on"] == "2026-09-01" and gone["first_signal_on"] == "2026-08-10"
    assert gone["days_before"] == 22
    assert gone["signals"][0]["code"] == "cancel_scheduled"
    # six months later it is out of the window
    assert churned(engine, account, datetime(2027, 3, 2, tzinfo=UTC))["accounts"] == []


def meter_world(meter_summaries: list[tuple[int, int, float]]) -> tuple[list[dict], StripeWorld]:
    objs = catalog() + customer("metered", "Meter Corp", [3] * 7, metered_price=METERED)
    world = StripeWorld()
    world.add_all(objs)
    world.meter_summaries["mtr_calls"] = [
        {
            "id": f"mtrusg_{n}",
            "object": "billing.meter_event_summary",
            "aggregated_value": value,
            "start_time": start,
            "end_time": end,
            "livemode": False,
            "meter": "mtr_calls",
            "customer": "cus_metered",
        }
        for n, (start, end, value) in enumerate(meter_summaries)
    ] + [
        {
            "id": "mtrusg_other",
            "object": "billing.meter_event_summary",
            "aggregated_value": 1.0,
            "start_time": T(10),
            "end_time": T(11),
            "livemode": False,
            "meter": "mtr_calls",
            "customer": "cus_x",
        }
    ]
    return objs, world


@pytest.mark.parametrize(("october", "flagged"), [(300.0, True), (690.0, False)])
def test_meter_summaries_feed_usage_decline(engine: Engine, october: float, flagged: bool) -> None:
    # July..September 600, 700, 800 (mean 700); the April summary lies outside the four periods asked for
    summaries = [
        (T(4), T(5), 5000.0),
        (T(7), T(8), 600.0),
        (T(8), T(9), 700.0),
        (T(9), T(10), 800.0),
        (T(10), T(11), october),
    ]
    objs, world = meter_world(summaries)
    with FakeStripe(world) as fake:
        account = add_account(engine, fake.url)
        load(engine, account, objs)
        stored = refresh_meter_usage(engine, get_settings(), account)
        assert stored == 4  # Jul, Aug, Sep, Oct
        assert fake.request_count("/v1/billing/meters/mtr_calls/event_summaries") == 4
        assert fake.writes == []
    with Session(engine) as session:
        rows = session.exec(select(MeterUsage).order_by(MeterUsage.start_time)).all()  # type: ignore[arg-type]
    assert [(r.start_time, r.aggregated_value) for r in rows] == [
        (T(7), 600.0),
        (T(8), 700.0),
        (T(9), 800.0),
        (T(10), october),
    ]
    found = at_risk(engine, account, AS_OF)["accounts"]
    if flagged:
        assert found[0]["signals"][0]["detail"] == (
            "API calls: metered usage 300 in the period to 2026-11-01 vs 700 average of the 3 periods before "
            "(57% lower)"
        )
    else:
        assert found == []


def test_cli_at_risk_and_churned_json(cli: CliRunner) -> None:
    engine = ensure_schema(get_settings().database_url)
    account = make_account(engine)
    load(engine, account)
    result = cli.invoke(app, ["at-risk", "acme", "--as-of", "2026-11-01", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["as_of"] == "2026-11-01"
    ids = [a["customer_id"] for a in payload["accounts"]]
    assert ids == ["cus_failed", "cus_cancel", "cus_seats", "cus_usage"]
    assert set(payload["accounts"][0]) >= {
        "customer_id",
        "name",
        "mrr",
        "signals",
        "renewal_date",
        "dashboard_url",
        "score",
    }
    table = cli.invoke(app, ["at-risk", "--as-of", "2026-11-01"])
    assert table.exit_code == 0 and "Failing Payments LLC" in table.stdout
    post_mortem = cli.invoke(app, ["churned", "--as-of", "2026-11-01", "--json"])
    assert post_mortem.exit_code == 0, post_mortem.output
    assert json.loads(post_mortem.stdout)["accounts"][0]["days_before"] == 22
    assert cli.invoke(app, ["at-risk", "nope"]).exit_code == 2


def test_a_customer_without_history_is_not_flagged(engine: Engine) -> None:
    account = make_account(engine)
    objs = catalog() + [b.customer("cus_new", "New Co")]
    load(engine, account, objs)
    assert at_risk(engine, account, AS_OF)["accounts"] == []


def test_billed_usage_wins_over_the_same_meter(engine: Engine) -> None:
    # usage billed steadily through the metered price (Apr..Oct), while the meter summaries would show a fall
    summaries = [(T(7), T(8), 600.0), (T(8), T(9), 700.0), (T(9), T(10), 800.0), (T(10), T(11), 100.0)]
    _, world = meter_world(summaries)
    objs = catalog() + customer("metered", "Meter Corp", [3] * 7, usage=[700] * 7, metered_price=METERED)
    with FakeStripe(world) as fake:
        account = add_account(engine, fake.url)
        load(engine, account, objs)
        assert refresh_meter_usage(engine, get_settings(), account) == 4
    assert at_risk(engine, account, AS_OF)["accounts"] == []


def test_an_earlier_as_of_than_the_last_sync_uses_dated_evidence_only(engine: Engine) -> None:
    account = make_account(engine)
    load(engine, account)
    with session_scope(engine) as session:
        session.add(SyncState(account_id=account.id or 0, last_sync_at=T(11, 20), last_sync_ok=True))
    # `past_due` is how the subscription stood on Nov 20: it says nothing about Nov 2; the open invoice
    # (created Nov 1, attempted and unpaid since) does
    nov2 = datetime(2026, 11, 2, tzinfo=UTC)
    before = {a["customer_id"]: a for a in at_risk(engine, account, nov2)["accounts"]}
    detail = before["cus_failed"]["signals"][0]["detail"]
    assert "in_failed_11" in detail and "past_due" not in detail
    on_sync_day = {
        a["customer_id"]: a for a in at_risk(engine, account, datetime(2026, 11, 20, tzinfo=UTC))["accounts"]
    }
    assert "past_due" in on_sync_day["cus_failed"]["signals"][0]["detail"]


def test_the_help_says_how_accounts_are_ranked() -> None:
    text = " ".join(CliRunner().invoke(app, ["at-risk", "--help"], terminal_width=200).output.split())
    assert "ranked by MRR at risk times the strength of the evidence" in text
    assert "largest MRR at risk first" not in text
