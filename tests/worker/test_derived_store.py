"""Derived figures (worker/derived_store.py) and the metric run the report reuses (worker/metrics_run.py
current_metrics): read back while the ledger's epoch is the one they were computed at, never after a rebuild
moved it, never stored when it moved while they were computed; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from metrics.calendar import month_starts_between
from metrics.cohort_sql import first_snapshot_day, month_movements
from metrics.ledger import MrrSnapshot
from metrics.segments import SizeBands
from metrics.tables import table_of
from tests.support.sample_rows import store_world
from tests.support.stripe_rows import make_account
from worker import metrics_run, mrr_queries, risk_store
from worker.demo.sample import build_sample_world
from worker.derived_store import COHORTS, DF, MOVEMENTS, TREND, figures, store_figures
from worker.metrics_run import compute_metrics, current_metrics, metric_history
from worker.models import Account
from worker.mrr_queries import delete_snapshot_days, fill_snapshot_days
from worker.rebuild import rebuild_account
from worker.report import loader
from worker.report.loader import cohort_totals, trend

AS_OF = datetime(2026, 6, 10, tzinfo=UTC)


def _forget(engine: Engine, account_id: int, customers: list[str] | None = None) -> None:
    """What a rebuild that recomputed these customers (None: every one) does to the epoch."""
    with engine.begin() as conn:
        risk_store.forget(conn, account_id, ["cus_x"] if customers is None else customers)


def _rows(engine: Engine) -> list[tuple[int, str, str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(DF.c.account_id, DF.c.kind, DF.c.key, DF.c.epoch)).all()
    return sorted((a, k, key, e) for a, k, key, e in rows)


def _read(engine: Engine, account_id: int, kind: str) -> tuple[int, dict[str, Any]]:
    with engine.connect() as conn:
        return figures(conn, account_id, kind)


# -- the store -------------------------------------------------------------------------------------------
def test_figures_are_read_back_at_their_epoch_and_not_once_it_moved(engine: Engine) -> None:
    aid = make_account(engine).id or 0
    since, found = _read(engine, aid, TREND)
    assert found == {}
    values = {"a": {"nrr": 0.9123, "grr": None}, "b": [1, 2, 3]}
    assert store_figures(engine, aid, TREND, since, values)
    assert _read(engine, aid, TREND) == (since, values)
    assert _read(engine, aid, COHORTS) == (since, {})  # kinds are apart
    _forget(engine, aid, [])  # a night's rebuild that recomputed no customer: the epoch stays
    assert _read(engine, aid, TREND) == (since, values)
    _forget(engine, aid)
    assert _read(engine, aid, TREND) == (since + 1, {})


def test_nothing_is_stored_when_the_epoch_moved_while_the_figures_were_computed(engine: Engine) -> None:
    aid = make_account(engine).id or 0
    since, _ = _read(engine, aid, TREND)
    assert store_figures(engine, aid, TREND, since, {"old": [1]})
    _forget(engine, aid)  # a rebuild commits while the report computes from rows read at `since`
    assert not store_figures(engine, aid, TREND, since, {"new": [2]}, keep=["old"])
    assert _rows(engine) == [(aid, TREND, "old", since)]  # the store rolled back whole, pruning included
    assert _read(engine, aid, TREND) == (since + 1, {})


def test_a_store_drops_other_epochs_and_the_keys_not_asked_for(engine: Engine) -> None:
    aid, other = make_account(engine, "a").id or 0, make_account(engine, "b").id or 0
    since, _ = _read(engine, aid, TREND)
    assert store_figures(engine, aid, TREND, since, {"d1": [1], "d2": [2]})
    assert store_figures(engine, aid, COHORTS, since, {"m": [3]})
    assert store_figures(engine, other, TREND, _read(engine, other, TREND)[0], {"d1": [9]})
    assert store_figures(engine, aid, TREND, since, {"d3": [4]}, keep=["d2"])  # d1 no longer asked for
    assert [(k, key) for a, k, key, _ in _rows(engine) if a == aid] == [
        (COHORTS, "m"),
        (TREND, "d2"),
        (TREND, "d3"),
    ]
    _forget(engine, aid)
    assert store_figures(engine, aid, TREND, since + 1, {"d3": [5]})
    assert [r for r in _rows(engine) if r[0] == aid] == [(aid, TREND, "d3", since + 1)]
    assert [r[1:3] for r in _rows(engine) if r[0] == other] == [(TREND, "d1")]  # another account's: kept


# -- the report's figures over a stored account ---------------------------------------------------------
@pytest.fixture
def account(engine: Engine) -> Account:
    """The sample company (60 customers, 18 months to June 2026), stored and rebuilt on 2026-06-10."""
    account = make_account(engine)
    store_world(engine, account, build_sample_world(seed=5, customers=60, months=18, end=date(2026, 6, 1)))
    rebuild_account(engine, account, AS_OF.date())
    return account


def _spy(monkeypatch: pytest.MonkeyPatch) -> tuple[list[date], list[date]]:
    """The snapshot days the trend makes sure of, and the days whose ratios it computes, from now on."""
    ensured: list[date] = []
    computed: list[date] = []

    def ensure(engine: Engine, account: Account, days: list[date]) -> None:
        ensured.extend(days)
        mrr_queries.ensure_snapshots(engine, account, days)

    def ratios(engine: Engine, account: Account, day: date) -> dict[str, float | None]:
        computed.append(day)
        return metrics_run.t12m_ratios(engine, account, day)

    monkeypatch.setattr(loader, "ensure_snapshots", ensure)
    monkeypatch.setattr(loader, "t12m_ratios", ratios)
    return ensured, computed


def test_trend_points_are_reused_without_their_snapshot_days_until_a_rebuild_changes_a_customer(
    engine: Engine, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    aid = account.id or 0
    head = compute_metrics(engine, account, AS_OF, store=False)["t12m"]
    fresh = trend(engine, account, AS_OF, reuse=False)
    assert len(fresh) == 13 and len({p["nrr"] for p in fresh}) > 3  # real, different figures
    assert {k: fresh[-1][k] for k in ("nrr", "grr", "logo_retention")} == {
        k: head[k] for k in ("nrr", "grr", "logo_retention")
    }
    assert _read(engine, aid, TREND)[1] == {}  # reuse=False stores nothing
    ensured, computed = _spy(monkeypatch)
    assert trend(engine, account, AS_OF, as_of_ratios=head) == fresh
    assert len(computed) == 12 and ensured  # the as-of point is the payload's: 12 month starts computed
    ensured.clear()
    computed.clear()
    assert trend(engine, account, AS_OF, as_of_ratios=head) == fresh
    assert (ensured, computed) == ([], [])  # every point read back, no snapshot day asked for
    # read back means read back: a stored point is what the trend shows while the epoch holds
    since, stored = _read(engine, aid, TREND)
    key = loader._trend_key(date(2026, 1, 1))
    assert store_figures(engine, aid, TREND, since, {key: {**stored[key], "nrr": 0.1234}}, keep=stored)
    assert [
        p["nrr"] for p in trend(engine, account, AS_OF, as_of_ratios=head) if p["as_of"] == "2026-01-01"
    ] == [0.1234]
    _forget(engine, aid)
    assert trend(engine, account, AS_OF, as_of_ratios=head) == fresh
    assert len(computed) == 12 and len(_read(engine, aid, TREND)[1]) == 12


def test_trend_points_computed_while_a_rebuild_commits_are_not_kept(
    engine: Engine, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    aid = account.id or 0

    def forgetting(engine: Engine, account: Account, day: date) -> dict[str, float | None]:
        _forget(engine, aid)  # a rebuild commits while the points are computed
        return metrics_run.t12m_ratios(engine, account, day)

    monkeypatch.setattr(loader, "t12m_ratios", forgetting)
    points = trend(engine, account, AS_OF)
    monkeypatch.undo()
    assert points == trend(engine, account, AS_OF, reuse=False)  # shown as computed...
    assert _rows(engine) == []  # ...but not kept


def test_cohort_sums_are_reused_for_the_same_month_starts_and_epoch(engine: Engine, account: Account) -> None:
    aid = account.id or 0
    last_month = date(2026, 6, 1)
    fresh = cohort_totals(engine, account, last_month, reuse=False)
    assert len(fresh.sizes) >= 10 and _rows(engine) == []
    assert cohort_totals(engine, account, last_month) == fresh
    since, stored = _read(engine, aid, COHORTS)
    (key,) = stored

    def tamper() -> None:  # read back means read back: what is stored is what the grid shows
        value = {**_read(engine, aid, COHORTS)[1][key], "sizes": [["2025-01-01", 1, 100]]}
        assert store_figures(engine, aid, COHORTS, _read(engine, aid, COHORTS)[0], {key: value})
        assert cohort_totals(engine, account, last_month).sizes == {date(2025, 1, 1): (1, 100)}

    tamper()
    # other stored month starts (one not computed yet, for a report after the rebuild's day) are another grid
    with engine.begin() as conn:
        delete_snapshot_days(conn, aid, [date(2026, 3, 1)])
    without_march = cohort_totals(engine, account, last_month, reuse=False)
    assert without_march != fresh and cohort_totals(engine, account, last_month) == without_march
    with engine.begin() as conn:
        fill_snapshot_days(conn, aid, [date(2026, 3, 1)])
    assert cohort_totals(engine, account, last_month) == fresh
    tamper()
    _forget(engine, aid)
    assert cohort_totals(engine, account, last_month) == fresh
    assert _read(engine, aid, COHORTS)[0] == since + 1


def test_month_movements_are_reused_for_the_same_month_starts_and_epoch(
    engine: Engine, account: Account
) -> None:
    aid = account.id or 0
    with engine.connect() as conn:
        first = first_snapshot_day(conn, aid)
        assert first is not None
        months = month_starts_between(first, date(2026, 6, 1))
        fresh = month_movements(conn, aid, months)
    assert len(fresh) >= 10 and _rows(engine) == []
    assert metrics_run.kept_movements(engine, aid, months) == fresh
    since, stored = _read(engine, aid, MOVEMENTS)
    (key,) = stored

    def tamper() -> None:  # read back means read back: what is stored is what the metrics show
        value = _read(engine, aid, MOVEMENTS)[1][key]
        value = {**value, "values": [[1, 2, 3, 4, 5, 6], *value["values"][1:]]}
        assert store_figures(engine, aid, MOVEMENTS, _read(engine, aid, MOVEMENTS)[0], {key: value})
        found = metrics_run.kept_movements(engine, aid, months)[0]
        assert (found.month, found.new, found.mrr) == (months[0], 1, 6)

    tamper()
    # other month starts (a month more) are other movements, computed and kept in their place
    shorter = metrics_run.kept_movements(engine, aid, months[:-1])
    assert shorter == fresh[:-1] and metrics_run.kept_movements(engine, aid, months[:-1]) == shorter
    tamper_key = _read(engine, aid, MOVEMENTS)[1][key]
    assert tamper_key["months"] == [m.isoformat() for m in months[:-1]]
    _forget(engine, aid)
    assert metrics_run.kept_movements(engine, aid, months) == fresh
    assert _read(engine, aid, MOVEMENTS)[0] == since + 1


# -- the stored metric run -------------------------------------------------------------------------------
def test_the_nightly_metric_run_is_reused_while_it_is_current(engine: Engine, account: Account) -> None:
    aid = account.id or 0
    assert current_metrics(engine, account, AS_OF) is None  # none stored
    compute_metrics(engine, account, AS_OF, store=False)
    assert current_metrics(engine, account, AS_OF) is None  # computed, not stored
    payload = compute_metrics(engine, account, AS_OF, store=True)
    assert current_metrics(engine, account, AS_OF) == payload
    assert current_metrics(engine, account, datetime(2026, 6, 9, tzinfo=UTC)) is None  # another day
    assert current_metrics(engine, account, AS_OF, SizeBands.parse("50,500")) is None  # other bands
    _forget(engine, aid)
    assert current_metrics(engine, account, AS_OF) is None
    compute_metrics(engine, account, AS_OF, store=True)
    assert current_metrics(engine, account, AS_OF) == payload  # the history did not really change
    # a snapshot day before the first one (a trend's window filled later) starts the movements earlier
    with engine.begin() as conn:
        row = {"account_id": aid, "customer_id": "cus_x", "day": date(2020, 1, 1), "mrr": 0, "one_time": 500}
        conn.execute(insert(table_of(MrrSnapshot)), [row])
    assert current_metrics(engine, account, AS_OF) is None
    assert compute_metrics(engine, account, AS_OF, store=False)["movements"] != payload["movements"]


def test_a_run_computed_while_a_rebuild_commits_is_stored_without_an_epoch(
    engine: Engine, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    aid = account.id or 0
    moved = []

    def forgetting(*args: Any) -> Any:
        if not moved:
            _forget(engine, aid)
            moved.append(True)
        return window_groups(*args)

    window_groups = metrics_run.window_groups
    monkeypatch.setattr(metrics_run, "window_groups", forgetting)
    payload = compute_metrics(engine, account, AS_OF, store=True)
    monkeypatch.undo()
    assert moved and [r["as_of"] for r in metric_history(engine, account)] == ["2026-06-10"]  # stored...
    assert current_metrics(engine, account, AS_OF) is None  # ...but not taken for current
    assert compute_metrics(engine, account, AS_OF, store=True) == payload
    assert current_metrics(engine, account, AS_OF) == payload
