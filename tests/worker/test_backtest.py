"""The backtest over stored rows: it measures exactly what a replay of `retention at-risk --as-of` at its
points measures (docs/at-risk.md), it is stored per account and day, and the command prints it.

The replay below is written independently of metrics/backtest.py: it asks `at_risk` at each of the twelve
points, and takes MRR from the ledger's own snapshots day by day (the sample company's MRR only changes at
00:00 UTC), then applies the definitions literally.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from statistics import median
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

import worker.backtest
from metrics.at_risk import Thresholds
from metrics.calendar import months_back
from tests.support.risk_world import AS_OF as SMALL_AS_OF
from tests.support.risk_world import SEATS, T, catalog, load
from tests.support.sample_rows import store_world
from tests.support.stripe_rows import make_account, store
from worker.backtest import backtest, compute_backtest
from worker.backtest_store import backtest_history, save_backtest, stored_backtest, track_records
from worker.cli.main import app
from worker.demo import builders as b
from worker.demo.sample import build_sample_world
from worker.models import Account
from worker.mrr_queries import points_for, snapshot_rows
from worker.rebuild import rebuild_account
from worker.risk import at_risk, iter_records
from worker.risk_store import kept_customers

END = date(2026, 11, 1)
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def daily_mrr(engine: Engine, account: Account, first: date, last: date) -> dict[date, dict[str, int]]:
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    out: dict[date, dict[str, int]] = {d: {} for d in days}
    with engine.connect() as conn:
        for customer, day, mrr, _, _ in snapshot_rows(conn, account.id or 0, points_for(days)):
            if mrr > 0:
                out[day][customer] = mrr
    return out


def replay(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    """The backtest definitions (docs/at-risk.md) by hand over `retention at-risk --as-of` at each point."""
    points = [months_back(as_of, k) for k in range(15, 3, -1)]
    days = [p.date() for p in points]
    mrr = daily_mrr(engine, account, days[0] - timedelta(days=130), days[-1] + timedelta(days=125))
    flags: list[tuple[date, str, list[str]]] = []
    shares = []
    for point in points:
        found = at_risk(engine, account, point)["accounts"]
        paying = mrr[point.date()]
        assert {a["customer_id"] for a in found} <= set(paying)
        shares.append(len(found) / len(paying))
        flags += [(point.date(), a["customer_id"], [s["code"] for s in a["signals"]]) for a in found]

    def hit(day: date, customer: str) -> bool:
        at_t = mrr[day][customer]
        later = [mrr[day + timedelta(days=n)].get(customer, 0) for n in range(1, 121)]
        return any(v == 0 or v <= 0.9 * at_t for v in later)

    hits = [hit(day, c) for day, c, _ in flags]
    by_signal: dict[str, list[int]] = {}
    for (_, _, codes), h in zip(flags, hits, strict=True):
        for code in codes:
            counts = by_signal.setdefault(code, [0, 0])
            counts[0] += 1
            counts[1] += h
    churners = []
    first, last = days[0] + timedelta(days=28), days[-1] + timedelta(days=120)
    day = first
    while day <= last:
        before = mrr[day - timedelta(days=1)]
        for customer in sorted(c for c in before if c not in mrr[day]):
            leads = [(day - d).days for d, c, _ in flags if c == customer and 28 <= (day - d).days <= 150]
            weight = mrr[day - timedelta(days=125)].get(customer, 0)
            churners.append((customer, day, weight, max(leads) if leads else None))
        day += timedelta(days=1)
    caught = [c for c in churners if c[3] is not None]
    total = sum(c[2] for c in churners)
    return {
        "points": [d.isoformat() for d in days],
        "precision": round(sum(hits) / len(flags), 4),
        "recall": round(sum(c[2] for c in caught) / total, 4),
        "recall_count": {"caught": len(caught), "churners": len(churners)},
        "noise": round(max(shares), 4),
        "median_lead_days": float(median(c[3] for c in caught)),  # type: ignore[type-var]
        "by_signal": {
            code: {"flags": f, "hits": h, "precision": round(h / f, 4)}
            for code, (f, h) in sorted(by_signal.items())
        },
        "missed": [(c[0], c[2] / 100, c[1].isoformat()) for c in churners if c[3] is None],
    }


def test_the_backtest_equals_a_replay_of_at_risk_at_its_points(engine: Engine) -> None:
    account = make_account(engine)
    store_world(engine, account, build_sample_world(seed=3, customers=200, months=20, end=END))
    rebuild_account(engine, account, today=END)
    measured = backtest(engine, account, AS_OF)
    expected = replay(engine, account, AS_OF)
    # not an empty comparison: the sample has flags, hits, churners caught and missed
    assert expected["recall_count"]["churners"] >= 5 and expected["recall_count"]["caught"] > 0
    assert expected["missed"] and expected["by_signal"]
    missed = [(m["customer_id"], m["mrr"], m["churned_on"]) for m in measured.pop("missed")]
    assert missed == expected.pop("missed")
    assert measured.pop("as_of") == "2026-11-01" and measured.pop("warnings") == []
    assert measured == expected


def test_stored_per_day_with_history_and_track_records_from_five_cases(engine: Engine) -> None:
    account = make_account(engine)
    store_world(engine, account, build_sample_world(seed=3, customers=200, months=20, end=END))
    rebuild_account(engine, account, today=END)
    assert stored_backtest(engine, account, AS_OF) is None
    older = compute_backtest(engine, account, datetime(2026, 10, 1, tzinfo=UTC))
    newer = compute_backtest(engine, account, AS_OF)
    save_backtest(engine, account, older)
    save_backtest(engine, account, newer)
    save_backtest(engine, account, newer)  # a rerun of the same night replaces its row
    assert [r.as_of for r in backtest_history(engine, account)] == [date(2026, 10, 1), date(2026, 11, 1)]
    # a replay of an earlier date sees the backtest of that date, never a later one
    assert stored_backtest(engine, account, datetime(2026, 10, 15, tzinfo=UTC)) == older
    assert stored_backtest(engine, account, AS_OF) == newer
    records = track_records(newer)
    assert records and all(r.flags >= 5 for r in records.values())
    assert set(records) == {code for code, (flags, _) in newer.by_signal.items() if flags >= 5}
    # at-risk --json shows them on each signal that has one, null on the others
    for entry in at_risk(engine, account, AS_OF)["accounts"]:
        for signal in entry["signals"]:
            record = records.get(signal["code"])
            expected = {"flags": record.flags, "hits": record.hits} if record else None
            assert signal["track_record"] == expected


def test_an_account_with_too_few_churners_is_warned(engine: Engine) -> None:
    account = make_account(engine)
    load(engine, account)  # one customer left (September): too few to judge
    payload = backtest(engine, account, SMALL_AS_OF)
    assert payload["recall_count"]["churners"] <= 1
    assert [w["code"] for w in payload["warnings"]] in (["too_few_churners"], ["no_churners"])


def test_the_command_prints_the_backtest_as_json_and_as_text(engine: Engine, monkeypatch: Any) -> None:
    account = make_account(engine)
    load(engine, account)
    runner = CliRunner()
    monkeypatch.setenv("RETENTION_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    out = runner.invoke(app, ["backtest", account.name, "--as-of", "2026-11-01", "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert set(payload) >= {
        "as_of",
        "points",
        "precision",
        "recall",
        "recall_count",
        "noise",
        "median_lead_days",
        "by_signal",
        "missed",
        "warnings",
    }
    assert len(payload["points"]) == 12 and payload["points"][0] == "2025-08-01"
    text = runner.invoke(app, ["backtest", account.name, "--as-of", "2026-11-01"])
    assert text.exit_code == 0 and "churned MRR was flagged 28+ days ahead" in text.output


def test_thin_input_gives_no_signal_no_crash_and_says_there_are_no_churners(engine: Engine) -> None:
    account = make_account(engine)
    paid = b.line("il_p", "in_p", 5000, (T(10), T(11)), price_obj=SEATS, subscription="sub_p", quantity=1)
    store(
        engine,
        account,
        [
            *catalog(),
            b.customer("cus_none", "No invoices"),
            b.customer("cus_empty", "Empty subscription"),
            b.subscription("sub_empty", "cus_empty", [], created=T(10)),  # a subscription with no items
            b.invoice("in_empty", "cus_empty", [], created=T(10)),  # an invoice with no lines
            b.customer("cus_p", "Pays"),
            b.subscription(
                "sub_p", "cus_p", [b.subscription_item("si_p", "sub_p", SEATS, 1, (T(10), T(11)))]
            ),
            b.invoice("in_p", "cus_p", [paid], created=T(10), subscription="sub_p"),
        ],
    )
    rebuild_account(engine, account, today=date(2026, 10, 15))
    assert at_risk(engine, account, datetime(2026, 10, 15, tzinfo=UTC))["accounts"] == []
    assert at_risk(engine, account, datetime(2025, 1, 1, tzinfo=UTC))["accounts"] == []  # before any invoice
    payload = backtest(engine, account, datetime(2026, 10, 15, tzinfo=UTC))
    assert payload["precision"] is None and payload["recall"] is None and payload["missed"] == []
    assert [w["code"] for w in payload["warnings"]] == ["no_churners"]


def test_the_nightly_keeps_each_customers_spans_and_reads_them_back(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = make_account(engine)
    store_world(engine, account, build_sample_world(seed=3, customers=200, months=20, end=END))
    rebuild_account(engine, account, today=END)
    read: list[str] = []

    def counted(engine: Engine, account: Account, customers: Any, *args: Any, **kw: Any) -> Any:
        read.extend(customers)
        return iter_records(engine, account, customers, *args, **kw)

    monkeypatch.setattr(worker.backtest, "iter_records", counted)
    spans_read: list[str] = []

    def kept(conn: Any, account_id: int, customers: Any) -> Any:
        spans_read.extend(customers)
        return kept_customers(conn, account_id, customers)

    monkeypatch.setattr(worker.backtest, "kept_customers", kept)
    fresh = compute_backtest(engine, account, AS_OF)
    everyone = len(read)
    read.clear()
    assert compute_backtest(engine, account, AS_OF, reuse=True) == fresh  # judges every customer, keeps spans
    assert len(read) == everyone
    read.clear()
    assert compute_backtest(engine, account, AS_OF, reuse=True) == fresh  # every point read back
    assert read == []
    # night after night the points move by a day: the same figures, most customers not read again
    due = []
    for night in range(1, 16):
        as_of = AS_OF + timedelta(days=night)
        read.clear()
        spans_read.clear()
        assert compute_backtest(engine, account, as_of, reuse=True) == compute_backtest(
            engine, account, as_of
        )
        assert len(read) - everyone < everyone / 3, night  # the second call reads everyone
        due.append(len(spans_read))
    # and the others are added from their kept contributions, without reading their spans and MRR steps:
    # a customer falls due when a point reaches one of its boundaries, about once a month
    assert sum(due) < everyone and max(due) < everyone / 5, due
    # under other thresholds the kept spans are not used
    other = Thresholds(seat_drop=0.2)
    assert compute_backtest(engine, account, AS_OF, other, reuse=True) == compute_backtest(
        engine, account, AS_OF, other
    )
