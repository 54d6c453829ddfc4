"""metrics/calendar.py: month-end clamping, leap years, year boundaries, inclusive ends, UTC conversions."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.calendar import (
    day_start,
    day_ts,
    last_month_starts,
    moment_ts,
    month_start,
    month_starts_between,
    month_starts_covering,
    months_back,
    next_month_start,
    utc_datetime,
    utc_day,
    utc_now,
)

# Far enough from date.min/date.max that moving up to 240 months either way stays in range.
days = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))
month_counts = st.integers(min_value=-240, max_value=240)


# -- months_back ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 11, 25), 12, date(2025, 11, 25)),
        (date(2026, 3, 31), 1, date(2026, 2, 28)),  # clamped to February's end
        (date(2024, 3, 31), 1, date(2024, 2, 29)),  # leap year
        (date(2000, 3, 31), 1, date(2000, 2, 29)),  # divisible by 400: leap
        (date(2100, 3, 31), 1, date(2100, 2, 28)),  # divisible by 100: not leap
        (date(2024, 2, 29), 12, date(2023, 2, 28)),
        (date(2026, 5, 31), 1, date(2026, 4, 30)),
        (date(2026, 1, 15), 1, date(2025, 12, 15)),  # year boundary
        (date(2026, 1, 31), 13, date(2024, 12, 31)),
        (date(2026, 1, 31), -1, date(2026, 2, 28)),  # negative months move forward
        (date(2025, 12, 31), -2, date(2026, 2, 28)),
        (date(2026, 7, 4), 0, date(2026, 7, 4)),
    ],
)
def test_months_back_clamps_to_the_month_end(day: date, months: int, expected: date) -> None:
    assert months_back(day, months) == expected


def test_months_back_keeps_a_datetimes_time_and_zone() -> None:
    moment = datetime(2026, 3, 31, 13, 45, 7, 123, tzinfo=UTC)
    assert months_back(moment, 1) == datetime(2026, 2, 28, 13, 45, 7, 123, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    shifted = months_back(datetime(2026, 1, 1, 0, 30, tzinfo=plus_two), 1)
    assert shifted == datetime(2025, 12, 1, 0, 30, tzinfo=plus_two)
    assert shifted.tzinfo is plus_two


def test_months_back_keeps_a_date_a_date() -> None:
    assert type(months_back(date(2026, 3, 31), 1)) is date


@given(days, st.integers(min_value=0, max_value=240))
def test_months_back_then_forward_never_passes_the_start(day: date, months: int) -> None:
    back = months_back(day, months)
    assert back <= day
    again = months_back(back, -months)
    assert again <= day
    assert (again.year, again.month) == (day.year, day.month)


@given(days, month_counts)
def test_months_back_moves_whole_calendar_months(day: date, months: int) -> None:
    moved = months_back(day, months)
    assert (day.year * 12 + day.month) - (moved.year * 12 + moved.month) == months
    assert moved.day == min(day.day, next_month_start(moved).toordinal() - month_start(moved).toordinal())


# -- month starts ---------------------------------------------------------------------------------------
def test_month_start_and_next_month_start() -> None:
    assert month_start(date(2026, 2, 28)) == date(2026, 2, 1)
    assert month_start(date(2026, 2, 1)) == date(2026, 2, 1)
    assert next_month_start(date(2026, 2, 1)) == date(2026, 3, 1)
    assert next_month_start(date(2025, 12, 31)) == date(2026, 1, 1)  # year boundary


def test_month_starts_between_keeps_both_ends_inclusive() -> None:
    assert month_starts_between(date(2025, 11, 1), date(2026, 2, 1)) == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]


def test_month_starts_between_skips_the_start_of_a_mid_month_first_day() -> None:
    assert month_starts_between(date(2025, 11, 15), date(2026, 1, 31)) == [
        date(2025, 12, 1),
        date(2026, 1, 1),
    ]
    assert month_starts_between(date(2025, 11, 15), date(2025, 11, 30)) == []
    assert month_starts_between(date(2026, 2, 1), date(2026, 1, 1)) == []


def test_month_starts_covering_includes_the_month_of_first() -> None:
    assert month_starts_covering(date(2025, 11, 15), date(2026, 1, 31)) == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
    ]
    assert month_starts_covering(date(2025, 11, 1), date(2025, 11, 1)) == [date(2025, 11, 1)]
    assert month_starts_covering(date(2026, 1, 20), date(2025, 12, 31)) == []


def test_last_month_starts_counts_back_across_a_year_boundary() -> None:
    assert last_month_starts(date(2026, 2, 14), 4) == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    assert last_month_starts(date(2026, 2, 1), 1) == [date(2026, 2, 1)]
    assert last_month_starts(date(2026, 2, 1), 0) == []


@given(days, days)
def test_month_starts_are_ordered_firsts_of_month_within_range(a: date, b: date) -> None:
    first, last = min(a, b), max(a, b)
    if (last - first).days > 3660:
        last = first + timedelta(days=3660)
    between = month_starts_between(first, last)
    covering = month_starts_covering(first, last)
    for starts in (between, covering):
        assert starts == sorted(set(starts))
        assert all(d.day == 1 for d in starts)
        assert all(d <= last for d in starts)
        assert all(next_month_start(x) == y for x, y in zip(starts, starts[1:], strict=False))
    assert all(first <= d for d in between)
    # covering adds exactly the start of first's month when first is not a month start
    assert covering == ([month_start(first)] if first.day != 1 else []) + between
    if covering:
        assert covering[0] <= first < next_month_start(covering[0])
        assert next_month_start(covering[-1]) > last


@given(days, st.integers(min_value=0, max_value=120))
def test_last_month_starts_are_the_latest_count_month_starts(day: date, count: int) -> None:
    starts = last_month_starts(day, count)
    assert len(starts) == count
    if count:
        assert starts[-1] == month_start(day)
        assert starts == month_starts_between(starts[0], day)


# -- UTC conversions ------------------------------------------------------------------------------------
@pytest.fixture
def far_from_utc() -> Iterator[None]:
    """A local zone far from UTC, so a conversion that used local time would give a different answer."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available")
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"  # UTC+14
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_day_ts_and_day_start_are_midnight_utc(far_from_utc: None) -> None:
    assert day_ts(date(1970, 1, 1)) == 0
    assert day_ts(date(1970, 1, 2)) == 86400
    assert day_ts(date(2026, 11, 1)) == 1793491200
    assert day_ts(date(2024, 3, 1)) - day_ts(date(2024, 2, 28)) == 2 * 86400  # leap day
    assert day_start(date(2026, 11, 1)) == datetime(2026, 11, 1, tzinfo=UTC)
    # a datetime's time of day and zone are dropped, not converted
    plus_two = timezone(timedelta(hours=2))
    assert day_ts(datetime(2026, 11, 1, 1, 0, tzinfo=plus_two)) == 1793491200
    assert day_start(datetime(2026, 11, 1, 23, 59)) == datetime(2026, 11, 1, tzinfo=UTC)


def test_moment_ts_is_the_instant_truncated(far_from_utc: None) -> None:
    assert moment_ts(datetime(2026, 11, 1, tzinfo=UTC)) == 1793491200
    assert moment_ts(datetime(2026, 11, 1, 0, 0, 59, 999999, tzinfo=UTC)) == 1793491259
    plus_two = timezone(timedelta(hours=2))
    assert moment_ts(datetime(2026, 11, 1, 2, 0, tzinfo=plus_two)) == 1793491200  # converted, not dropped


def test_utc_day_and_utc_datetime_ignore_the_local_zone(far_from_utc: None) -> None:
    assert utc_day(0) == date(1970, 1, 1)
    assert utc_day(1793491200 - 1) == date(2026, 10, 31)  # UTC+14 would say 1 November
    assert utc_day(1793491200) == date(2026, 11, 1)
    assert utc_datetime(1793491200 + 1.5) == datetime(2026, 11, 1, 0, 0, 1, 500000, tzinfo=UTC)
    assert utc_datetime(0).tzinfo is UTC


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_unix_seconds_round_trip(moment: datetime) -> None:
    seconds = moment_ts(moment)
    assert utc_datetime(seconds) == moment.replace(microsecond=0)
    assert utc_day(seconds) == moment.date()
    assert day_ts(moment.date()) <= seconds < day_ts(moment.date()) + 86400
    assert utc_day(day_ts(moment.date())) == moment.date()


def test_utc_now_is_aware_and_current() -> None:
    before = datetime.now(UTC)
    now = utc_now()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)
