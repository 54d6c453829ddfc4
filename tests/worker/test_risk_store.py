"""Stored verdicts (worker/risk_store.py): read back while they hold, forgotten with the history they rest on,
and never kept when a forget came while they were judged."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

import worker.risk
from integrations.stripe import changes
from metrics.at_risk import DAY, CustomerRecords, RiskAssessment, Thresholds, evaluate, mrr_at
from metrics.calendar import utc_datetime, utc_day
from tests.metrics.test_at_risk_turning_points import BASE, customer
from tests.support.risk_world import AS_OF, load
from tests.support.stripe_rows import make_account
from worker import risk_store
from worker.models import Account
from worker.risk import (
    AHEAD,
    evaluate_customers,
    iter_records,
    judged_ahead,
    kept_verdict,
    present_assessments,
    read_back,
)


def _stored(engine: Engine, account: Account) -> dict[str, risk_store.StoredVerdict]:
    with engine.connect() as conn:
        return risk_store.verdicts(conn, account.id or 0)


def _judged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Customers read for judging from now on (worker/risk.py reads them through iter_records)."""
    read: list[str] = []

    def counted(engine: Engine, account: Account, customers: Any, *args: Any, **kw: Any) -> Any:
        read.extend(customers)
        return iter_records(engine, account, customers, *args, **kw)

    monkeypatch.setattr(worker.risk, "iter_records", counted)
    return read


def test_verdicts_are_read_back_while_they_hold_and_judged_again_once_forgotten(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = make_account(engine)
    load(engine, account)
    judged = _judged(monkeypatch)
    first = present_assessments(engine, account, AS_OF)
    assert first and len(judged) == len(_stored(engine, account))
    judged.clear()
    assert present_assessments(engine, account, AS_OF) == first
    assert judged == []  # the same instant: every verdict read back
    later = AS_OF + timedelta(days=3)
    judged.clear()
    assert present_assessments(engine, account, later) == evaluate_customers(
        engine, account, sorted(_stored(engine, account)), later
    )
    flagged = {a.customer_id for a in first}
    assert flagged <= set(judged)  # a turning point came (a renewal window's first day): judged again
    # a week on, before the next turning point: every verdict read back, the days to a renewal counted again
    week = later + timedelta(days=7)
    judged.clear()
    on_week = present_assessments(engine, account, week)
    assert judged == [] and {a.customer_id for a in on_week} == flagged
    assert on_week == evaluate_customers(engine, account, sorted(_stored(engine, account)), week)
    renewals = {s.detail for a in on_week for s in a.signals if s.code == "renewal_soon"}
    assert renewals and renewals.isdisjoint(s.detail for a in first for s in a.signals)
    some = sorted(flagged)[0]
    with engine.begin() as conn:
        risk_store.forget(conn, account.id or 0, [some])
    judged.clear()
    present_assessments(engine, account, later)
    assert judged == [some]


def test_the_verdict_judged_ahead_is_read_back_after_the_first_ends(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run past the end of the verdicts that ended within two days judges none of the customers whose
    verdict judged ahead holds then, and answers as judging every customer again would."""
    account = make_account(engine)
    load(engine, account)
    present_assessments(engine, account, AS_OF)
    stored = _stored(engine, account)
    ahead = {cid: v for cid, v in stored.items() if v.then is not None}
    assert ahead  # the world has verdicts ending within two days
    assert all(
        v.valid_until - v.judged_at < AHEAD and v.then and v.then.judged_at == v.valid_until
        for v in ahead.values()
    )
    after = max(v.valid_until for v in ahead.values())
    then = utc_datetime(after)
    judged = _judged(monkeypatch)
    found = present_assessments(engine, account, then)
    holding = {cid for cid, v in ahead.items() if v.then and v.then.judged_at <= after < v.then.valid_until}
    assert holding and holding.isdisjoint(judged)
    assert found == evaluate_customers(engine, account, sorted(stored), then)


def test_the_ranked_list_of_an_instant_is_read_back_until_anything_changes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The at-risk list, the digest and the report of one night ask for the same instant: the second ask
    reads the kept list alone; another instant, a change a sync noted, or a rebuild's forget judge again."""
    account = make_account(engine)
    load(engine, account)
    first = present_assessments(engine, account, AS_OF)
    assert first

    def unread(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the stored verdicts were read")

    monkeypatch.setattr(worker.risk, "verdicts", unread)
    assert present_assessments(engine, account, AS_OF) == first  # read back: no verdict read
    with pytest.raises(AssertionError, match="verdicts were read"):
        present_assessments(engine, account, AS_OF + timedelta(hours=1))  # another instant
    some = first[0].customer_id
    with engine.begin() as conn:  # a sync stored a change of this customer, not rebuilt yet
        changes.note_page(conn, account.id or 0, "customers", [{"id": some, "object": "customer"}])
    with pytest.raises(AssertionError, match="verdicts were read"):
        present_assessments(engine, account, AS_OF)
    monkeypatch.undo()
    with engine.begin() as conn:
        changes.clear(conn, account.id or 0, 2**62)  # what the rebuild clears
        risk_store.forget(conn, account.id or 0, [some])  # what the rebuild does when it recomputed it
    judged = _judged(monkeypatch)
    assert present_assessments(engine, account, AS_OF) == first and judged == [some]


def test_nothing_is_kept_when_verdicts_were_forgotten_while_they_were_judged(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = make_account(engine)
    load(engine, account)

    def forgetting(engine: Engine, account: Account, *args: Any, **kw: Any) -> Iterator[CustomerRecords]:
        found = list(iter_records(engine, account, *args, **kw))
        with engine.begin() as conn:  # a rebuild commits after the rows were read
            risk_store.forget(conn, account.id or 0, None)
        yield from found

    monkeypatch.setattr(worker.risk, "iter_records", forgetting)
    found = present_assessments(engine, account, AS_OF)
    assert found and _stored(engine, account) == {}  # judged from what was read, but not kept
    monkeypatch.undo()
    assert present_assessments(engine, account, AS_OF) == found
    assert len(_stored(engine, account)) > 0  # no forget this time: kept


def test_a_replay_of_a_past_day_is_judged_afresh_and_not_kept(engine: Engine) -> None:
    account = make_account(engine)
    load(engine, account)
    past = AS_OF - timedelta(days=200)
    assert present_assessments(engine, account, past) == evaluate_customers(
        engine, account, sorted(worker.risk.paying(engine, account, past)), past
    )
    assert _stored(engine, account) == {}


def _random_case(
    rng: random.Random, th: Thresholds
) -> tuple[CustomerRecords, bool, int, RiskAssessment | None]:
    """A random customer (tests/metrics/test_at_risk_turning_points.py), whether the state is current, an
    instant within its history and the verdict judged there."""
    records = customer(rng)
    current = rng.random() < 0.5
    at = BASE + rng.randrange(300) * DAY + rng.choice([0, 0, 6, 12]) * 3600
    return records, current, at, evaluate(records, at, mrr_at(records.revenue, at), current, th)


@pytest.mark.parametrize("seed", range(4))
def test_a_kept_verdict_read_back_on_a_later_day_is_the_verdict_judged_then(seed: int) -> None:
    """Random customers (those of tests/metrics/test_at_risk_turning_points.py), downgrades among them: a
    verdict as stored (`kept_verdict`) and read back at any later instant it holds equals judging again there,
    texts included; customers at risk are kept past their day except with a downgrade."""
    rng = random.Random(seed)
    th = Thresholds(lookback_days=rng.choice([90, 30]))
    past_the_day = {"downgrade": 0, "other": 0}
    for _ in range(600):
        records, current, at, found = _random_case(rng, th)
        held = kept_verdict(records, at, found, th, "basis")
        for later in (at, at + 3600, at + DAY, at + 3 * DAY, at + 20 * DAY, held.valid_until - 1):
            holds, assessment = read_back(held, "basis", later)
            if not holds:
                continue
            assert assessment == evaluate(records, later, mrr_at(records.revenue, later), current, th)
            if found is not None and utc_day(later) != utc_day(at):
                past_the_day["downgrade" if "downgrade" in found.codes else "other"] += 1
    assert past_the_day["downgrade"] == 0 and past_the_day["other"] > 20


@pytest.mark.parametrize("seed", range(4))
def test_a_verdict_judged_ahead_read_back_is_the_verdict_judged_then(seed: int) -> None:
    """The same random customers: a verdict that ends within two days carries the next one, judged from the
    same records at the instant it ends; read back anywhere in either, it equals judging again there."""
    rng = random.Random(seed)
    th = Thresholds(lookback_days=rng.choice([90, 30]))
    from_ahead = 0
    for _ in range(600):
        records, current, at, found = _random_case(rng, th)
        held = judged_ahead(records, kept_verdict(records, at, found, th, "basis"), current, th, "basis")
        if held.valid_until - at >= AHEAD:
            assert held.then is None
            continue
        assert held.then is not None and held.then.judged_at == held.valid_until
        ends = min(held.then.valid_until, held.valid_until + 30 * DAY)
        for later in (held.valid_until - 1, held.valid_until, held.valid_until + 3600, ends - 1, ends):
            holds, assessment = read_back(held, "basis", later)
            if later >= held.then.valid_until:
                assert not holds
            if not holds:
                continue
            assert assessment == evaluate(records, later, mrr_at(records.revenue, later), current, th)
            from_ahead += later >= held.valid_until
    assert from_ahead > 50
