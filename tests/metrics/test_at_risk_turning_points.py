"""`next_change`: over [at, next_change) a customer's verdict cannot change, its records unchanged.

Random customers (usage, seats, plans, invoices, subscriptions, revenue on a coarse grid of instants, so that
boundaries meet and the lookback's edges fall on other lines' edges) are judged at an instant and at instants
before its next turning point: the stored verdict of worker/risk.py relies on them being equal.
"""

from __future__ import annotations

import random

import pytest

from metrics.at_risk import (
    DAY,
    CustomerRecords,
    InvoiceState,
    LicensedLine,
    RevenueLine,
    RiskAssessment,
    SubscriptionState,
    Thresholds,
    UsagePeriod,
    UsageSeries,
    _turning_points,
    change_points,
    evaluate,
    mrr_at,
    next_after,
    next_change,
    redated,
    signals_at,
)
from metrics.calendar import utc_day

BASE = 1_767_225_600  # 2026-01-01 00:00 UTC
MONTH = 30 * DAY


def _instant(rng: random.Random, months: int = 8) -> int:
    """On a grid of whole days (often) or hours, so that edges coincide."""
    day = rng.randrange(months * 30)
    return BASE + day * DAY + (rng.choice([0, 0, 0, 6, 12]) * 3600)


def _maybe(rng: random.Random, value: int) -> int | None:
    return value if rng.random() < 0.5 else None


def _usage(rng: random.Random) -> tuple[UsageSeries, ...]:
    out = []
    for n in range(rng.randrange(3)):
        start = BASE + rng.randrange(60) * DAY
        length = rng.choice([MONTH, 7 * DAY, DAY])
        count = rng.randrange(3, 16)
        quantities = [rng.choice([100.0, 90.0, 60.0, 40.0, 0.0]) for _ in range(count)]
        periods = tuple(
            UsagePeriod(start + k * length, start + (k + 1) * length, q) for k, q in enumerate(quantities)
        )
        out.append(UsageSeries(f"si_u{n}", "API", rng.choice(["billed", "meter"]), periods))
    return tuple(out)


def _licensed(rng: random.Random) -> tuple[LicensedLine, ...]:
    out = []
    for _ in range(rng.randrange(6)):
        start = BASE + rng.randrange(8) * MONTH + rng.choice([0, 0, 10 * DAY])
        qty = rng.choice([10, 9, 8, 5, None])
        price = rng.choice(["price_a", "price_b"])
        unit = 5000 if price == "price_a" else 3000
        monthly = (qty or 1) * unit * rng.choice([1, 1, -1])
        out.append(
            LicensedLine(
                rng.choice(["si_1", "si_2"]),
                "Pro",
                price,
                start,
                start + rng.choice([MONTH, 12 * MONTH, 15 * DAY]),
                qty,
                monthly,
                rng.choice(["usd", "usd", "eur"]),
                rng.choice([0, 0, 500]),
                rng.choice(["month", "year", None]),
                rng.choice([None, start, start + 3 * DAY, start - DAY]),
            )
        )
    return tuple(out)


def _invoices(rng: random.Random) -> tuple[InvoiceState, ...]:
    out = []
    for n in range(rng.randrange(4)):
        created = _instant(rng)
        out.append(
            InvoiceState(
                f"in_{n}",
                rng.choice(["open", "paid", "void", "uncollectible"]),
                created,
                rng.randrange(4),
                rng.choice([0, 12000]),
                "usd",
                _maybe(rng, created + rng.randrange(1, 20) * DAY),
                _maybe(rng, created + rng.choice([0, 3600, DAY])),
            )
        )
    return tuple(out)


def _subscriptions(rng: random.Random) -> tuple[SubscriptionState, ...]:
    out = []
    for n in range(rng.randrange(3)):
        created = _instant(rng, 4)
        out.append(
            SubscriptionState(
                f"sub_{n}",
                rng.choice(["active", "past_due", "canceled", "trialing"]),
                _maybe(rng, created),
                _maybe(rng, created + rng.randrange(1, 9) * MONTH),
                rng.random() < 0.3,
                _maybe(rng, _instant(rng)),
                _maybe(rng, _instant(rng)),
                _maybe(rng, _instant(rng)),
                rng.choice(["month", "year", None]),
            )
        )
    return tuple(out)


def _revenue(rng: random.Random) -> tuple[RevenueLine, ...]:
    out = []
    for _ in range(rng.randrange(1, 4)):
        start = _instant(rng, 6)
        out.append(RevenueLine(start, start + rng.randrange(1, 5) * MONTH, rng.choice([10000, 5000, -2000])))
    return tuple(out)


def customer(rng: random.Random) -> CustomerRecords:
    return CustomerRecords(
        "cus_1",
        "Acme",
        0,
        "usd",
        _subscriptions(rng),
        _invoices(rng),
        _usage(rng),
        _licensed(rng),
        _revenue(rng),
    )


def _shape(a: RiskAssessment | None) -> object:
    """What must not change before the next turning point (details may still move with the calendar day)."""
    if a is None:
        return None
    return (a.mrr, a.score, tuple((s.code, s.weight) for s in a.signals), a.renewal_date)


def _judge(records: CustomerRecords, at: int, current: bool, th: Thresholds) -> RiskAssessment | None:
    return evaluate(records, at, mrr_at(records.revenue, at), current, th)


@pytest.mark.parametrize("seed", range(6))
def test_no_verdict_changes_before_the_next_turning_point(seed: int) -> None:
    rng = random.Random(seed)
    th = Thresholds(lookback_days=rng.choice([90, 30]))
    flagged = turned = 0
    for _ in range(400):
        records = customer(rng)
        current = rng.random() < 0.5
        at = _instant(rng, 10)
        found = _judge(records, at, current, th)
        until = next_change(records, at, th, signals=found is not None)
        end = until if until is not None else at + 400 * DAY
        assert end > at
        flagged += found is not None
        probes = {at + 1, end - 1, *(rng.randrange(at, end) for _ in range(6))}
        for probe in sorted(p for p in probes if at <= p < end):
            later = _judge(records, probe, current, th)
            assert _shape(later) == _shape(found), (seed, at, probe, until)
            if found is not None and later is not None and utc_day(probe) == utc_day(at):
                assert later.signals == found.signals  # the same day: the same texts too
        if until is not None:
            turned += _shape(_judge(records, until, current, th)) != _shape(found)
    assert flagged > 20 and turned > 20  # the cases covered flagged customers and verdicts that did turn


@pytest.mark.parametrize("seed", range(6))
def test_no_signal_changes_before_the_next_turning_point_without_money(seed: int) -> None:
    """The backtest's spans: the signals alone (MRR left to the outcomes), on dated evidence only."""
    rng = random.Random(seed)
    th = Thresholds()
    signalled = 0
    for _ in range(400):
        records = customer(rng)
        at = _instant(rng, 10)
        codes = [s.code for s in signals_at(records, at, False, th)[0]]
        until = next_change(records, at, th, money=False, signals=bool(codes))
        end = until if until is not None else at + 400 * DAY
        signalled += bool(codes)
        for probe in {at + 1, end - 1, *(rng.randrange(at, end) for _ in range(6))}:
            if at <= probe < end:
                assert [s.code for s in signals_at(records, probe, False, th)[0]] == codes, (seed, at, probe)
    assert signalled > 20


@pytest.mark.parametrize("seed", range(4))
def test_a_bound_asks_only_for_the_turning_points_before_it(seed: int) -> None:
    """`before` (the stored verdict's next day start, or any other bound): the first turning point before it,
    the same as the unbounded answer where that is before the bound, else None."""
    rng = random.Random(seed)
    th = Thresholds(lookback_days=rng.choice([90, 30]))
    cut = kept = 0
    for _ in range(400):
        records = customer(rng)
        at = _instant(rng, 10)
        signals = rng.random() < 0.7
        money = rng.random() < 0.7
        full = next_change(records, at, th, money=money, signals=signals)
        day_end = (at // DAY + 1) * DAY
        for before in (day_end, at + rng.randrange(1, 3 * DAY), day_end + rng.choice([DAY, 40 * DAY])):
            bounded = next_change(records, at, th, money=money, signals=signals, before=before)
            assert bounded == (full if full is not None and full < before else None), (seed, at, before)
            kept += bounded is not None
            cut += bounded is None and full is not None
    assert kept > 50 and cut > 50


@pytest.mark.parametrize("seed", range(6))
def test_a_verdict_without_a_downgrade_redated_is_the_verdict_of_a_later_day(seed: int) -> None:
    """A stored verdict kept past its day (worker/risk.py): before the next turning point, `redated` gives
    exactly what judging again gives, texts included, on any later day."""
    rng = random.Random(seed)
    th = Thresholds(lookback_days=rng.choice([90, 30]))
    redone = 0
    for _ in range(800):
        records = customer(rng)
        current = rng.random() < 0.5
        at = _instant(rng, 10)
        found = _judge(records, at, current, th)
        if found is None or "downgrade" in found.codes:
            continue
        until = next_change(records, at, th, signals=True)
        end = until if until is not None else at + 400 * DAY
        probes = {at, end - 1, at + DAY, at + 3 * DAY, *(rng.randrange(at, end) for _ in range(6))}
        for probe in sorted(p for p in probes if p < end):
            later = _judge(records, probe, current, th)
            assert redated(found, probe) == later, (seed, at, probe)
            redone += later is not None and later.signals != found.signals  # a text did move
    assert redone > 10


@pytest.mark.parametrize("seed", range(3))
def test_the_renewal_dates_left_out_are_all_past(seed: int) -> None:
    """`next_change` skips the renewal dates of the periods that ended a day or more before the instant: the
    answer is the first of every turning point after it, none of them skipped."""
    rng = random.Random(seed)
    th = Thresholds(lookback_days=rng.choice([90, 30]))
    for _ in range(400):
        records = customer(rng)
        at = _instant(rng, 10)
        money, signals = rng.random() < 0.5, rng.random() < 0.8
        every = _turning_points(records, th, money, signals, after=-(2**62))
        assert next_change(records, at, th, money, signals) == min((x for x in every if x > at), default=None)


@pytest.mark.parametrize("seed", range(3))
def test_the_turning_points_listed_once_answer_as_next_change_at_every_instant(seed: int) -> None:
    """The backtest lists a customer's turning points once and bisects them at each instant it asks."""
    rng = random.Random(seed)
    th = Thresholds(lookback_days=rng.choice([90, 30]))
    found = 0
    for _ in range(200):
        records = customer(rng)
        money, signals = rng.random() < 0.5, rng.random() < 0.8
        points = change_points(records, th, money, signals)
        assert points == sorted(set(points))
        for at in [_instant(rng, 10) for _ in range(8)] + points[:3]:
            answer = next_change(records, at, th, money, signals)
            assert next_after(points, at) == answer, (seed, at)
            found += answer is not None
    assert found > 500
