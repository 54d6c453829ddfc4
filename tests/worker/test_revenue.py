"""The revenue payloads and the status entry as services (worker/revenue.py, worker/status.py), on SQLite
and PostgreSQL; the command-line tests read the same payloads through `retention` on SQLite."""

from __future__ import annotations

from datetime import date

from sqlalchemy.engine import Engine

from metrics.calendar import day_start
from metrics.dbapi import reader_of
from tests.support.rebuild_worlds import monthly_world
from tests.support.stripe_rows import make_account, store
from worker import revenue
from worker.demo import builders as b
from worker.status import account_status


def test_mrr_payload_names_each_customer_paying_at_the_instant(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, monthly_world())
    payload = revenue.mrr_payload(
        engine, account, day_start(date(2026, 3, 15))
    )  # Beta canceled on 2026-03-10
    assert payload == {
        "as_of": "2026-03-15T00:00:00+00:00",
        "currency": "usd",
        "mrr": 100.0,
        "customers": [{"id": "cus_a", "name": "Alpha", "mrr": 100.0, "plan": "Pro"}],
    }


def test_movements_payload_starts_at_the_first_counted_month(engine: Engine) -> None:
    account, empty = make_account(engine, "acme"), make_account(engine, "empty")
    store(engine, account, monthly_world())
    months = revenue.movements_payload(engine, account, today=date(2026, 4, 15))["months"]
    assert [m["month"] for m in months] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert (months[0]["new"], months[-1]["mrr"]) == (200.0, 0.0)
    assert revenue.movements_payload(engine, empty, today=date(2026, 4, 15)) == {
        "currency": "usd",
        "months": [],
    }


def test_explain_payload_splits_counted_and_left_out_lines(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, monthly_world())
    payload = revenue.explain_payload(engine, account, "cus_a", day_start(date(2026, 2, 15)))
    assert (payload["name"], payload["account"], payload["mrr"]) == ("Alpha", "acme", 100.0)
    assert [ln["line_id"] for ln in payload["lines"]] == ["il_a1"]
    assert {ln["line_id"]: ln["left_out"] for ln in payload["left_out"]} == {"il_void": "void invoice"}
    assert "warnings" not in payload


def test_a_customer_is_known_from_the_ledger_or_from_the_stored_objects(engine: Engine) -> None:
    acme, other = make_account(engine, "acme"), make_account(engine, "other")
    store(engine, acme, monthly_world())
    store(engine, other, [b.customer("cus_new", None)])  # synced, never billed: no ledger line
    revenue.mrr_payload(engine, acme, day_start(date(2026, 1, 15)))  # builds the ledger
    assert revenue.has_customer(engine, acme, "cus_a") and not revenue.has_customer(engine, other, "cus_a")
    assert revenue.has_customer(engine, other, "cus_new")
    assert revenue.accounts_with_customer(engine, [acme, other], "cus_new") == [other]
    assert revenue.accounts_with_customer(engine, [acme, other], "cus_nobody") == []
    assert revenue.customer_names(engine, other) == {"cus_new": None}


def test_status_entry_before_any_sync(engine: Engine) -> None:
    account = make_account(engine)
    with engine.connect() as conn:
        entry = account_status(reader_of(conn), account.id or 0, account.name)
    assert entry == {
        "name": "acme",
        "last_sync_at": None,
        "last_sync_ok": None,
        "last_error": None,
        "mode": None,
        "counts": {
            "customers": 0,
            "products": 0,
            "prices": 0,
            "subscriptions": 0,
            "invoices": 0,
            "line_items": 0,
            "credit_notes": 0,
        },
        "deleted": {"customers": 0, "subscriptions": 0},
        "rejected": [],
        "last_nightly": None,
        "slack": None,
        "last_watch": None,
    }
