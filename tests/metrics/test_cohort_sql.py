"""The SQL aggregation equals the reference definitions, on SQLite and PostgreSQL (`engine` runs both)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from metrics.calendar import month_starts_between
from metrics.cohort_sql import GroupKey, first_snapshot_day, month_movements, total_mrr, window_groups
from metrics.cohorts import CustomerPair, Window, aggregate, fold
from metrics.ledger import ClassifiedLine, MrrSnapshot
from metrics.movements import movements
from metrics.segments import DEFAULT_SIZE_BANDS
from metrics.tables import table_of
from worker.models import Account

T0, T1 = date(2025, 6, 1), date(2026, 6, 1)
EDGES = DEFAULT_SIZE_BANDS.minor_edges("usd")


def make_account(engine: Engine, name: str) -> int:
    with engine.begin() as conn:
        statement = insert(table_of(Account)).values(name=name, key_encrypted="x", reporting_currency="usd")
        key = conn.execute(statement).inserted_primary_key
    assert key is not None
    return int(key[0])


def put_snapshots(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(table_of(MrrSnapshot)), rows)


def snap(
    account: int, customer: str, day: date, mrr: int, one_time: int = 0, plan: str | None = "Pro"
) -> dict[str, Any]:
    return {
        "account_id": account,
        "customer_id": customer,
        "day": day,
        "mrr": mrr,
        "one_time": one_time,
        "plan": plan,
    }


def test_window_groups_match_the_reference_definition(engine: Engine) -> None:
    acct, other = make_account(engine, "a"), make_account(engine, "b")
    rng = random.Random(5)
    rows, pairs = [], []
    for i in range(120):
        m0 = rng.choice([0, 0, 5_000, 50_000, 120_000, 2_000_000])
        m1 = rng.choice([0, m0, m0 // 2, m0 * 2, 80_000])
        o0, o1 = rng.choice([0, 10_000]), rng.choice([0, 30_000])
        if m0 or o0:
            rows.append(snap(acct, f"c{i}", T0, m0, o0, rng.choice(["Pro", "Basic", None])))
        if m1 or o1 or rng.random() < 0.3:  # sometimes a zero row, sometimes no row: both mean MRR 0
            rows.append(snap(acct, f"c{i}", T1, m1, o1))
        pairs.append(CustomerPair(m0, m1, o0, o1))
    rows.append(snap(other, "c0", T0, 999_999))  # another account's customer with the same id
    put_snapshots(engine, rows)
    with engine.connect() as conn:
        groups = window_groups(conn, acct, Window("t12m", T0, T1), EDGES)
    assert fold(groups.values()) == aggregate(pairs)
    # each group is the reference aggregate of its own customers
    by_band: dict[int, list[CustomerPair]] = {}
    for p in pairs:
        if p.mrr0 > 0:
            by_band.setdefault(sum(1 for e in EDGES if p.mrr0 >= e), []).append(p)
    for band, members in by_band.items():
        assert fold(a for k, a in groups.items() if k.band == band) == aggregate(members)


def test_plan_and_signup_month_come_from_t0_and_first_mrr(engine: Engine) -> None:
    acct = make_account(engine, "a")
    put_snapshots(
        engine,
        [
            snap(acct, "early", date(2024, 3, 1), 10_000, plan="Basic"),
            snap(acct, "early", T0, 20_000, plan="Pro"),
            snap(acct, "early", T1, 20_000, plan="Pro"),
            snap(acct, "trial", date(2024, 1, 1), 0),  # a zero row is not the first MRR
            snap(acct, "trial", date(2025, 2, 1), 30_000, plan=None),
            snap(acct, "trial", T0, 30_000, plan=None),
            snap(acct, "midmonth", date(2025, 5, 1), 40_000, plan="Pro"),
            snap(acct, "midmonth", T0, 40_000, plan="Pro"),
        ],
    )
    # the ledger knows "midmonth" started paying on 2025-04-20, before its first month-start snapshot
    started = int(datetime(2025, 4, 20, tzinfo=UTC).timestamp())
    line = {
        "account_id": acct,
        "invoice_id": "in_1",
        "customer_id": "midmonth",
        "reason": "r",
        "period_start": started,
        "period_end": started + 30 * 86400,
        "currency": "usd",
        "net_amount": 40_000,
        "monthly_amount": 40_000,
        "mrr_end": started + 30 * 86400,
    }
    with engine.begin() as conn:
        conn.execute(
            insert(table_of(ClassifiedLine)),
            [
                {
                    **line,
                    "line_id": "il_1",
                    "klass": "recurring",
                    "counted": True,
                    "monthly_reporting": 40_000,
                },
                # an earlier one-time line and an earlier excluded line do not make an earlier signup
                {
                    **line,
                    "line_id": "il_2",
                    "klass": "one_time",
                    "counted": True,
                    "monthly_reporting": 0,
                    "period_start": started - 90 * 86400,
                },
                {
                    **line,
                    "line_id": "il_3",
                    "klass": "recurring",
                    "counted": False,
                    "monthly_reporting": None,
                    "excluded_reason": "void",
                    "period_start": started - 60 * 86400,
                },
            ],
        )
    with engine.connect() as conn:
        groups = window_groups(conn, acct, Window("t12m", T0, T1), EDGES)
    keys = {k: (a.customers, a.start) for k, a in groups.items()}
    assert keys == {
        GroupKey("Pro", 1, "2024-03"): (1, 20_000),
        GroupKey(None, 1, "2025-02"): (1, 30_000),
        GroupKey("Pro", 1, "2025-04"): (1, 40_000),
    }


def test_movements_match_the_pure_definition_with_gaps_and_reactivations(engine: Engine) -> None:
    acct = make_account(engine, "a")
    months = month_starts_between(date(2025, 1, 1), date(2025, 12, 1))
    rng = random.Random(11)
    rows, series = [], []
    per_month: list[dict[str, int]] = [{} for _ in months]
    for i in range(60):
        for k, m in enumerate(months):
            value = rng.choice([0, 0, 1000, 2000, 5000, 5000, 5000])
            if value == 0 and rng.random() < 0.5:
                continue  # absent row: MRR 0
            rows.append(snap(acct, f"c{i}", m, value))
            per_month[k][f"c{i}"] = value
        rows.append(snap(acct, f"c{i}", date(2025, 3, 15), 77_777))  # a nightly, not a month start: ignored
    put_snapshots(engine, rows)
    series = list(zip(months, per_month, strict=True))
    expected = movements(series)
    with engine.connect() as conn:
        got = month_movements(conn, acct, months)
        assert first_snapshot_day(conn, acct) == months[0]
        assert total_mrr(conn, acct, months[-1]) == expected[-1].mrr
    for g, e in zip(got, expected, strict=True):
        assert g.month == e.month
        # the pure function signs churn and contraction negative; ours keeps positive amounts
        assert (g.mrr, g.new, g.expansion, -g.contraction, -g.churn, g.reactivation) == (
            e.mrr,
            e.new,
            e.expansion,
            e.contraction,
            e.churn,
            e.reactivation,
        )
    for prev, cur in zip(got, got[1:], strict=False):
        assert cur.new + cur.reactivation + cur.expansion - cur.contraction - cur.churn == cur.mrr - prev.mrr
