"""`retention sync` and `retention status` as a user runs them, against the local Stripe server."""

from __future__ import annotations

import json

from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from tests.support.stripe_world import KEY, add_account, build_world, world_totals
from worker.cli.main import app
from worker.db import ensure_schema
from worker.demo import builders as b
from worker.demo.stripe_server import FakeStripe, Fault
from worker.settings import get_settings


def env_engine() -> Engine:
    return ensure_schema(get_settings().database_url)


def status_json(cli: CliRunner, *args: str) -> dict:  # type: ignore[type-arg]
    result = cli.invoke(app, ["status", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_sync_then_status_reports_counts_mode_and_rejected(cli: CliRunner) -> None:
    world = build_world(customers=12, months=3)
    world.add({"id": "cus_broken", "object": "customer", "created": "soon"})
    with FakeStripe(world) as fake:
        add_account(env_engine(), fake.url, name="acme")
        result = cli.invoke(app, ["sync", "acme"])
        assert result.exit_code == 0, result.output
        assert "full sync" in result.stdout and "1 object rejected" in result.stdout
        payload = status_json(cli, "acme")
        again = cli.invoke(app, ["sync"])  # NAME left out: every account (here the only one)
        assert again.exit_code == 0 and "incremental sync" in again.stdout
    assert fake.writes == []
    (entry,) = payload["accounts"]
    assert set(entry) == {
        "name",
        "last_sync_at",
        "last_sync_ok",
        "last_error",
        "mode",
        "counts",
        "deleted",
        "rejected",
        "last_nightly",
        "slack",
        "last_watch",
    }
    assert (entry["name"], entry["last_sync_ok"], entry["last_error"], entry["mode"]) == (
        "acme",
        True,
        None,
        "full",
    )
    assert entry["counts"] == world_totals(world) | {"customers": world_totals(world)["customers"] - 1}
    assert entry["rejected"] == [
        {"id": "cus_broken", "object": "customer", "error": "field 'created' should be an integer, got str"}
    ]
    assert entry["deleted"] == {"customers": 0, "subscriptions": 0}
    assert entry["last_nightly"] is None
    assert entry["slack"] is None  # no alert was ever delivered
    assert status_json(cli)["accounts"][0]["mode"] == "incremental"


def test_status_shows_what_stripe_no_longer_lists(cli: CliRunner) -> None:
    world = build_world(customers=12, months=3)
    with FakeStripe(world) as fake:
        add_account(env_engine(), fake.url, name="acme")
        assert cli.invoke(app, ["sync", "acme"]).exit_code == 0
        world.delete_customer("cus_00003")
        world.remove("subscription", "sub_00005")
        world.remove("subscription", "sub_00006")
        full = cli.invoke(app, ["sync", "acme", "--full"])
        assert full.exit_code == 0, full.output
        assert "marked deleted (no longer in Stripe): 1 customer, 2 subscriptions" in " ".join(
            full.stdout.split()
        )
    entry = status_json(cli, "acme")["accounts"][0]
    assert entry["deleted"] == {"customers": 1, "subscriptions": 2}
    assert entry["counts"]["customers"] == 12 and entry["counts"]["subscriptions"] == 12  # kept
    text = cli.invoke(app, ["status", "acme"])
    shown = " ".join(text.stdout.split())
    assert "deleted in Stripe (kept, not counted): 1 customer, 2 subscriptions" in shown


def test_a_sync_that_keeps_failing_exits_1_and_is_recorded_as_failed(cli: CliRunner) -> None:
    world = build_world(customers=3, months=1)
    with FakeStripe(world) as fake:
        add_account(env_engine(), fake.url, name="acme")
        fake.inject(*[Fault(status=500, headers={"Stripe-Should-Retry": "false"}) for _ in range(10)])
        result = cli.invoke(app, ["sync", "acme"])
    assert result.exit_code == 1
    assert "FAILED" in result.stdout and KEY not in result.stdout
    entry = status_json(cli, "acme")["accounts"][0]
    assert entry["last_sync_ok"] is False and "HTTP 500" in entry["last_error"]
    assert KEY not in json.dumps(entry)


def test_sync_unknown_account_is_refused(cli: CliRunner) -> None:
    add_account(env_engine(), "http://127.0.0.1:9", name="acme")
    result = cli.invoke(app, ["sync", "nope"])
    assert result.exit_code == 2 and "nope" in result.stderr


def test_status_text_lists_rejected_objects(cli: CliRunner) -> None:
    world = build_world(customers=2, months=1)
    world.add({**b.product("prod_bad", "Bad"), "active": "yes"})
    with FakeStripe(world) as fake:
        add_account(env_engine(), fake.url, name="acme")
        assert cli.invoke(app, ["sync", "acme"]).exit_code == 0
    result = cli.invoke(app, ["status", "acme"])
    assert result.exit_code == 0
    assert "1 object rejected" in result.stdout
    assert "product prod_bad: field 'active' should be a boolean" in result.stdout


def test_a_failed_incremental_sync_is_shown_as_incremental(cli: CliRunner) -> None:
    """status must not call the failed run by the mode of the last good one ("(full) FAILED")."""
    world = build_world(customers=3, months=1)
    with FakeStripe(world) as fake:
        add_account(env_engine(), fake.url, name="acme")
        assert cli.invoke(app, ["sync", "acme"]).exit_code == 0  # full, ok
        fake.inject(*[Fault(status=500, headers={"Stripe-Should-Retry": "false"}) for _ in range(10)])
        failed = cli.invoke(app, ["sync", "acme"])
    assert failed.exit_code == 1 and "incremental sync FAILED" in failed.stdout
    entry = status_json(cli, "acme")["accounts"][0]
    assert (entry["mode"], entry["last_sync_ok"]) == ("incremental", False)
    text = cli.invoke(app, ["status", "acme"]).stdout
    assert "last incremental sync" in text and "FAILED" in text and "full" not in text


def test_sync_off_a_terminal_prints_plain_progress_lines_and_a_summary(cli: CliRunner) -> None:
    world = build_world(customers=12, months=3)
    with FakeStripe(world) as fake:
        add_account(env_engine(), fake.url, name="acme")
        result = cli.invoke(app, ["sync", "acme"])
    assert result.exit_code == 0, result.output
    assert "acme: invoices" in result.stderr and "(done)" in result.stderr
    assert "\x1b[" not in result.stderr  # no bar, no cursor movement in a log
    invoices = world_totals(world)["invoices"]
    assert f"invoices {invoices:,}" in result.stdout and "requests to Stripe" in result.stdout
