"""`holds_until`: a customer's backtest contribution, kept by point index, is the same on every as-of day
before the day it names, its history and signal spans unchanged.

The nightly backtest keeps each customer's contribution and adds it again, without reading the customer, on
the nights before that day (worker/backtest.py): a boundary missed here would make a kept backtest differ from
one computed afresh. Random customers (revenue lines on a grid of whole days or hours, back-to-back renewals
at the same amount, cuts, churns and comebacks; signal spans of random codes) are checked day by day.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, timedelta

import pytest

from metrics.at_risk import DAY, RevenueLine
from metrics.backtest import Contribution, MrrSteps, Tally, backtest_points, holds_until
from metrics.calendar import day_start

BASE = 1_704_067_200  # 2024-01-01 00:00 UTC
Span = tuple[int, int, tuple[str, ...] | None]


def _instant(rng: random.Random, days: int) -> int:
    return BASE + rng.randrange(days) * DAY + rng.choice([0, 0, 0, 0, 6 * 3600, 23 * 3600])


def _revenue(rng: random.Random) -> list[RevenueLine]:
    """Consecutive periods (monthly or yearly) at amounts that stay, rise, fall or stop; sometimes back."""
    lines = []
    for _ in range(rng.randrange(1, 3)):
        start = _instant(rng, 900)
        monthly = rng.choice([1000, 5000, 20000])
        for _ in range(rng.randrange(1, 30)):
            length = rng.choice([30, 31, 30, 365]) * DAY
            lines.append(RevenueLine(start, start + length, monthly))
            start += length
            roll = rng.random()
            if roll < 0.1:
                monthly = int(monthly * rng.choice([0.5, 0.85, 0.95, 1.5]))
            elif roll < 0.18:
                start += rng.randrange(1, 200) * DAY  # stopped paying, maybe back later
    return lines


def _spans(rng: random.Random) -> list[Span]:
    """Signal codes over the whole range, in spans of random length (mostly none)."""
    out: list[Span] = []
    t = BASE - 400 * DAY
    while t < BASE + 1500 * DAY:
        until = t + rng.choice([1, 3, 10, 40, 120]) * DAY + rng.choice([0, 0, 3600])
        codes = rng.choice([None, None, None, ("payment_failed",), ("usage_drop", "seats_down")])
        out.append((t, until, codes))
        t = until
    return out


def _flagged(c: Contribution) -> set[int]:
    return {k for k, _, _ in c.flags}


def _contribution(day: date, steps: MrrSteps, spans: Sequence[Span]) -> Contribution:
    tally = Tally(backtest_points(day_start(day)), "usd")

    def judge(k: int, t: int, mrr: int) -> tuple[str, ...] | None:
        return next(s[2] for s in spans if s[0] <= t < s[1])

    return tally.contribution(steps, judge)


@pytest.mark.parametrize("seed", range(150))
def test_a_contribution_holds_until_the_day_it_names(seed: int) -> None:
    """Day by day over a year: a contribution kept on one day equals the fresh one on every day before the
    day it named; on that day it is computed again (and kept again)."""
    rng = random.Random(seed)
    steps = MrrSteps(_revenue(rng))
    spans = _spans(rng)
    edges = [edge for s in spans for edge in s[:2]]
    day = date(2025, 1, 1) + timedelta(days=rng.randrange(400))
    kept = _contribution(day, steps, spans)
    until = holds_until(day, steps, edges, _flagged(kept))
    for n in range(1, 366):
        later = day + timedelta(days=n)
        fresh = _contribution(later, steps, spans)
        if later >= until:
            kept, until = fresh, holds_until(later, steps, edges, _flagged(fresh))
            assert until > later
        assert fresh == kept, f"kept until {until}, differs on {later}"


def test_a_kept_contribution_gives_the_tally_of_a_fresh_one() -> None:
    """Leads are kept as the index of the flagged point: added later, they count from that night's points."""
    rng = random.Random(7)
    customers = [(MrrSteps(_revenue(rng)), _spans(rng)) for _ in range(40)]
    day = date(2025, 9, 14)
    kept = [_contribution(day, steps, spans) for steps, spans in customers]
    for later in (day + timedelta(days=n) for n in range(0, 60, 3)):
        fresh = Tally(backtest_points(day_start(later)), "usd")
        reused = Tally(backtest_points(day_start(later)), "usd")
        for n, ((steps, spans), old) in enumerate(zip(customers, kept, strict=True)):
            edges = [edge for s in spans for edge in s[:2]]
            now = _contribution(later, steps, spans)
            fresh.add_contribution(f"cus_{n}", "name", now)
            held = later < holds_until(day, steps, edges, _flagged(old))
            reused.add_contribution(f"cus_{n}", "name", old if held else now)
        assert reused.result(day_start(later)) == fresh.result(day_start(later))
