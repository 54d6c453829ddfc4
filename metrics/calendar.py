"""Calendar arithmetic for the whole project: months back, month starts, Unix seconds and UTC days.

Every figure is taken at 00:00 UTC (docs/mrr.md), a day always means a UTC calendar day and an instant is
Unix seconds. Stripe rows, the SQL layer, the CLI and the pure metrics all convert between the three, and
the conversions used to be written out in each of them; one module keeps them from drifting apart by a time
zone, a month-end clamp or an inclusive end.

Pure standard library: metrics/ imports nothing from worker/ or integrations/, and both of those import this.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, date, datetime
from typing import TypeVar

# A date stays a date and a datetime stays a datetime (with its time and tzinfo): cohort windows move days,
# the churn window and meter periods move instants, and both need the same month-end rule.
Moment = TypeVar("Moment", date, datetime)


# -- months -------------------------------------------------------------------------------------------------
def months_back(moment: Moment, months: int) -> Moment:
    """The same day (and time) `months` calendar months earlier; a negative `months` moves forward.

    A day past the target month's end becomes its last day (31 Mar -> 28/29 Feb) rather than spilling into
    the next month, so a T12M window ending on the 31st starts in the right month and a monthly price's
    periods never skip or repeat a month.
    """
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    return moment.replace(year=year, month=month + 1, day=min(moment.day, monthrange(year, month + 1)[1]))


def month_start(day: date) -> date:
    """The first day of `day`'s month."""
    return day.replace(day=1)


def next_month_start(day: date) -> date:
    """The first day of the month after `day`'s: the exclusive end of `day`'s month."""
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def month_starts_between(first: date, last: date) -> list[date]:
    """Every first-of-month d with first <= d <= last (both ends inclusive).

    For reading stored month-start snapshots inside a range: a `first` in mid-month does not bring its own
    month's start, which lies before it (compare `month_starts_covering`).
    """
    return [d for d in month_starts_covering(first, last) if d >= first]


def month_starts_covering(first: date, last: date) -> list[date]:
    """The first day of every month from `first`'s month to `last` (inclusive): the month starts of the
    months that overlap [first, last].

    Unlike `month_starts_between`, the start of `first`'s own month is included even when it lies before
    `first`: a snapshot history must begin before the first revenue, so that the first month's MRR shows as
    new MRR against a zero start.
    """
    out, current = [], month_start(first)
    while current <= last:
        out.append(current)
        current = next_month_start(current)
    return out


def last_month_starts(day: date, count: int) -> list[date]:
    """The `count` latest month starts on or before `day` (`day`'s own month included), oldest first.

    Counted back from a day rather than bounded by two days: a trend shows a fixed number of points.
    """
    index = day.year * 12 + day.month - 1
    return [date(i // 12, i % 12 + 1, 1) for i in range(index - count + 1, index + 1)]


# -- days, instants and Unix seconds ------------------------------------------------------------------------
def day_start(day: date) -> datetime:
    """00:00 UTC on `day`, when that day's snapshot is taken (a datetime's time of day is dropped)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_ts(day: date) -> int:
    """Unix seconds of 00:00 UTC on `day` (a datetime's time of day and zone are dropped, not converted).

    Kept apart from `moment_ts` because the SQL layer compares snapshot days, not instants, with Stripe's
    Unix timestamps.
    """
    return int(day_start(day).timestamp())


def moment_ts(moment: datetime) -> int:
    """Unix seconds of an instant, truncated toward zero (Stripe's timestamps are whole seconds).

    The instant as given: an aware datetime in any zone gives its true Unix time; a naive one is read in the
    machine's local time (Python's rule), so callers pass aware datetimes.
    """
    return int(moment.timestamp())


def utc_day(seconds: float) -> date:
    """The UTC calendar day of a Unix time (never the machine's local day)."""
    return utc_datetime(seconds).date()


def utc_datetime(seconds: float) -> datetime:
    """A Unix time as an aware UTC datetime (never a naive local one)."""
    return datetime.fromtimestamp(seconds, UTC)


def utc_now() -> datetime:
    """Now, as an aware UTC datetime: what stored timestamps and `--as-of` default to."""
    return datetime.now(UTC)
