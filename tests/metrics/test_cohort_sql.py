"""The SQL aggregation equals the reference definitions, on SQLite and PostgreSQL (`engine` runs both)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from metrics.calendar import month_starts_between
from metrics.cohort_sql import GroupKey, first_snapshot_day, month_movements, total_mrr, window_groups
from metrics.cohorts import Aggregates, CustomerPair, Window, aggregate, fold, windows_for
from metrics.ledger import ClassifiedLine, MrrSnapshot
from metrics.movements import movements
from metrics.segments import DEFAULT_SIZE_BANDS
from metrics.tables import table_of
from tests.support.sample_rows import store_world
from tests.support.stripe_rows import make_account as make_stored_account
from tests.support.stripe_world import build_world
from worker.demo.sample import build_sample_world
from worker.models import Account
from worker.mrr_queries import ensure_snapshots, fill_snapshot_days
from worker.rates import import_rates
from worker.rebuild import rebuild_account

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


def _line(
    acct: int, customer: str, line_id: str, start: date, monthly: int | None, **extra: Any
) -> dict[str, Any]:
    """A counted recurring ledger line from `start` for two years (extra: any other column)."""
    t = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    row = {
        "account_id": acct,
        "line_id": line_id,
        "invoice_id": f"in_{line_id}",
        "customer_id": customer,
        "klass": "recurring",
        "reason": "r",
        "counted": True,
        "period_start": t,
        "period_end": t + 730 * 86400,
        "mrr_end": t + 730 * 86400,
        "currency": "usd",
        "net_amount": monthly or 0,
        "monthly_amount": monthly or 0,
        "monthly_reporting": monthly,
        "product_id": "Pro",
    }
    return row | extra


def test_plan_comes_from_t0_and_the_signup_month_from_the_first_paid_line(engine: Engine) -> None:
    """Snapshots computed from the ledger, as the rebuild writes them: the signup month is the month of the
    first counted recurring line with a positive amount, which a mid-month start has before its first
    month-start snapshot; zero, negative, one-time and left-out lines before it do not count."""
    acct = make_account(engine, "a")
    month = 30 * 86400
    lines = [
        _line(acct, "early", "e1", date(2024, 3, 1), 10_000, product_id="Basic", mrr_end=0),
        _line(acct, "early", "e2", date(2024, 4, 1), 20_000),
        _line(acct, "trial", "t1", date(2024, 1, 1), 0),  # a free trial: not paying yet
        _line(acct, "trial", "t2", date(2025, 2, 1), 30_000, product_id=None),
        _line(acct, "midmonth", "m1", date(2025, 4, 20), 40_000),
        _line(acct, "midmonth", "m0", date(2025, 1, 20), 40_000, klass="one_time", amount_reporting=9_000),
        _line(acct, "midmonth", "mv", date(2025, 2, 20), None, counted=False, excluded_reason="void"),
        _line(acct, "credited", "c0", date(2025, 1, 5), -2_000),  # a credit before it paid
        _line(acct, "credited", "c1", date(2025, 3, 10), 5_000),
    ]
    lines[0]["mrr_end"] = lines[0]["period_start"] + month
    with engine.begin() as conn:
        conn.execute(insert(table_of(ClassifiedLine)), lines)
        days = [date(2024, 1, 1), date(2024, 3, 1), date(2025, 2, 1), date(2025, 5, 1), T0, T1]
        fill_snapshot_days(conn, acct, days)
    with engine.connect() as conn:
        groups = window_groups(conn, acct, Window("t12m", T0, T1), EDGES)
    keys = {k: (a.customers, a.start) for k, a in groups.items()}
    band = {m: sum(1 for e in EDGES if m >= e) for m in (3_000, 20_000, 30_000, 40_000)}
    assert keys == {
        GroupKey("Pro", band[20_000], "2024-03"): (1, 20_000),
        GroupKey(None, band[30_000], "2025-02"): (1, 30_000),
        GroupKey("Pro", band[40_000], "2025-04"): (1, 40_000),
        GroupKey("Pro", band[3_000], "2025-03"): (1, 3_000),
    }


def _old_signup_groups(engine: Engine, acct: int, window: Window) -> dict[GroupKey, Aggregates]:
    """The groups as window_groups defined them before reading the line month alone: signup = the earlier
    of the month of the first snapshot with MRR > 0 and the month of the first counted recurring line with a
    positive amount (either when the other is missing), computed here in Python from every stored row."""
    snaps, lines = table_of(MrrSnapshot), table_of(ClassifiedLine)
    with engine.connect() as conn:
        rows = conn.execute(
            select(snaps.c.customer_id, snaps.c.day, snaps.c.mrr, snaps.c.one_time, snaps.c.plan).where(
                snaps.c.account_id == acct
            )
        ).all()
        paid = conn.execute(
            select(lines.c.customer_id, lines.c.period_start).where(
                lines.c.account_id == acct,
                lines.c.klass == "recurring",
                lines.c.counted.is_(True),
                lines.c.monthly_reporting > 0,
            )
        ).all()
    first_snap: dict[str, date] = {}
    at: dict[tuple[str, date], tuple[int, int, str | None]] = {}
    for customer, day, mrr, one_time, plan in rows:
        day = day if isinstance(day, date) else date.fromisoformat(day)
        at[(customer, day)] = (mrr, one_time, plan)
        if mrr > 0 and (customer not in first_snap or day < first_snap[customer]):
            first_snap[customer] = day
    first_line: dict[str, int] = {}
    for customer, start in paid:
        first_line[customer] = min(start, first_line.get(customer, start))
    members: dict[GroupKey, list[CustomerPair]] = {}
    for (customer, day), (m0, one0, plan) in at.items():
        if day != window.t0 or m0 <= 0:
            continue
        m1, one1, _ = at.get((customer, window.t1), (0, 0, None))
        snap_month = f"{first_snap[customer]:%Y-%m}" if customer in first_snap else None
        line_month = (
            f"{datetime.fromtimestamp(first_line[customer], UTC):%Y-%m}" if customer in first_line else None
        )
        if line_month is None or (snap_month is not None and snap_month <= line_month):
            signup = snap_month
        else:
            signup = line_month
        key = GroupKey(plan, sum(1 for e in EDGES if m0 >= e), signup)
        members.setdefault(key, []).append(CustomerPair(m0, m1, one0, one1))
    return {key: aggregate(pairs) for key, pairs in members.items()}


def test_the_signup_month_equals_the_earlier_of_first_snapshot_and_first_line_on_a_generated_account(
    engine: Engine,
) -> None:
    """The sample company (month-aligned and prorated mid-month periods, trials, coupons, one-time fees,
    customers billed in EUR with an imported rate and in GBP without one) plus customers whose 30-day
    periods start mid-month, synced as stored rows and rebuilt: for every window of a year of month starts
    and a mid-month day, the groups read with the line month alone equal those of the two-month expression."""
    world = build_sample_world(seed=3, customers=80, months=14, end=date(2026, 6, 1))
    build_world(
        customers=12, months=9, start=int(datetime(2025, 9, 17, 13, tzinfo=UTC).timestamp()), world=world
    )
    account = make_stored_account(engine)
    store_world(engine, account, world)
    import_rates(engine, "date,currency,rate\n2024-01-01,eur,1.08\n2025-07-01,eur,1.17\n", "usd")
    rebuild_account(engine, account, date(2026, 6, 10))
    acct = account.id or 0
    compared = set()
    for t1 in [*month_starts_between(date(2025, 6, 1), date(2026, 6, 1)), date(2026, 6, 10)]:
        for window in windows_for(t1):
            ensure_snapshots(engine, account, [window.t0, window.t1])
            with engine.connect() as conn:
                groups = window_groups(conn, acct, window, EDGES)
            assert groups == _old_signup_groups(engine, acct, window), window
            compared |= {k.cohort for k in groups}
    with engine.connect() as conn:
        currencies = {r[0] for r in conn.execute(select(table_of(ClassifiedLine).c.currency).distinct())}
    assert {"usd", "eur", "gbp"} <= currencies and len(compared) >= 12  # FX lines and many cohorts compared


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
