"""Exchange rates: the ECB's daily reference rates crossed through EUR, and the user's imported overrides.

Two sources, both pure data here (files and URLs are read in integrations/rates/, stored by worker/rates.py):
- the European Central Bank's reference history (a CSV of days x currencies, each value = units of that
  currency for 1 EUR, since 1999). Any pair is crossed through EUR: 1 unit of C = x_R / x_C units of R, kept
  as an exact fraction of the two published decimals, so a conversion is still rounded once (metrics/mrr.py).
- imported rates (`retention rates import FILE.csv`), per reporting currency: a row `date,currency,rate`
  means 1 unit of currency = rate units of the reporting currency from that date on. They take precedence over
  the ECB from a currency's first imported date on (the dates they cover); before it the ECB's rate serves.

The rate in force on a day is the latest published on or before it (weekends and holidays use the Friday's).
A currency the ECB stopped publishing (e.g. CYP after the euro, absent from the file's last 14 days) has no
rate after its last published day. A
line with no rate from either source is left out with a `missing_rate` warning, never counted 1:1.
"""

from __future__ import annotations

import csv
import hashlib
import io
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from metrics.currencies import ISO_CURRENCIES

HEADER = ("date", "currency", "rate")
EUR = "eur"
# An imported rate outside these bounds (major units per major unit) is a typo, not a currency: the widest
# real pairs (a dinar in rials) stay well inside them.
MIN_RATE = Decimal("1e-8")
MAX_RATE = Decimal("1e8")
# Where the ECB publishes both currencies, an imported rate more than this factor away from the ECB's rate of
# that day is refused as implausible (a rate meant for another reporting currency, an inverted pair).
PLAUSIBLE_FACTOR = Fraction(3, 2)
# A currency missing from the file's last this many days is no longer published (a one-day gap is not that).
DISCONTINUED_AFTER_DAYS = 14


class RatesError(ValueError):
    """A rates file the importer or the updater refuses; the message names the line and what is wrong."""


@dataclass(frozen=True, slots=True)
class Rate:
    day: date
    currency: str
    rate: Decimal


# -- imported rates ------------------------------------------------------------------------------------------
def parse_rates_csv(text: str, reporting: str, reference: RateTable | None = None) -> list[Rate]:
    """Every row of a rates CSV for this reporting currency, validated; any bad row refuses the whole file.

    `reference` (the ECB's rates for the same reporting currency) lets an implausible rate be refused.
    """
    reporting = reporting.lower()
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header) != HEADER:
        raise RatesError("line 1: the first line must be the header `date,currency,rate`")
    rates: list[Rate] = []
    seen: dict[tuple[str, date], int] = {}
    for number, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 3:
            raise RatesError(f"line {number}: expected 3 columns date,currency,rate, got {len(row)}")
        rate = _parse_row(number, row, reporting)
        _check_plausible(number, rate, reporting, reference)
        first = seen.setdefault((rate.currency, rate.day), number)
        if first != number:
            raise RatesError(
                f"line {number}: a second {rate.currency.upper()} rate for {rate.day} (line {first})"
            )
        rates.append(rate)
    if not rates:
        raise RatesError("the file has no rates after the header")
    return rates


def _parse_row(number: int, row: list[str], reporting: str) -> Rate:
    day_text, currency_text, rate_text = (cell.strip() for cell in row)
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise RatesError(f"line {number}: date {day_text!r} is not YYYY-MM-DD") from None
    currency = currency_text.lower()
    if currency not in ISO_CURRENCIES:
        raise RatesError(f"line {number}: {currency_text!r} is not an ISO 4217 currency code")
    if currency == reporting:
        raise RatesError(
            f"line {number}: {currency.upper()} is the reporting currency itself (its rate is always 1)"
        )
    try:
        rate = Decimal(rate_text)
    except InvalidOperation:
        raise RatesError(f"line {number}: rate {rate_text!r} is not a number") from None
    if not rate.is_finite() or rate <= 0:
        raise RatesError(f"line {number}: rate {rate_text!r} must be a positive number")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise RatesError(f"line {number}: rate {rate_text!r} is not a plausible exchange rate")
    return Rate(day, currency, rate)


def _check_plausible(number: int, rate: Rate, reporting: str, reference: RateTable | None) -> None:
    """Refuses a rate far from the ECB's for the same pair and day (when the ECB publishes both)."""
    if reference is None:
        return
    ecb = reference.rate_on(rate.currency, rate.day)
    if ecb is None:
        return
    ratio = Fraction(rate.rate) / ecb
    if ratio > PLAUSIBLE_FACTOR or ratio < 1 / PLAUSIBLE_FACTOR:
        raise RatesError(
            f"line {number}: 1 {rate.currency.upper()} = {rate.rate} {reporting.upper()} is not plausible: "
            f"the ECB's rate that day is {float(ecb):.6g}"
        )


class _Series:
    """One currency's rates by day, sorted, for `on` lookups in O(log n)."""

    __slots__ = ("days", "values", "until")

    def __init__(self, pairs: list[tuple[date, Fraction]], until: date | None = None) -> None:
        pairs.sort()
        self.days = [d for d, _ in pairs]
        self.values = [v for _, v in pairs]
        self.until = until  # no rate after this day (a currency no longer published)

    def on(self, day: date) -> Fraction | None:
        if self.until is not None and day > self.until:
            return None
        i = bisect_right(self.days, day)
        return None if i == 0 else self.values[i - 1]


# -- the ECB's reference history -----------------------------------------------------------------------------
class EcbHistory:
    """The ECB's reference rates (units of each currency for 1 EUR) by day, as published in its history file.

    Values are parsed per currency when first asked for: a rebuild needs two or three of the ~40 columns.
    """

    def __init__(self, days: list[date], columns: dict[str, list[str]]) -> None:
        order = sorted(range(len(days)), key=days.__getitem__)
        self.days = [days[i] for i in order]
        self._columns = {c: [values[i] for i in order] for c, values in columns.items()}
        self._series: dict[str, _Series | None] = {}

    @property
    def first_day(self) -> date:
        return self.days[0]

    @property
    def last_day(self) -> date:
        return self.days[-1]

    def currencies(self) -> list[str]:
        """Every currency with at least one published rate, and EUR itself."""
        return sorted({EUR} | {c for c in self._columns if self.span(c) is not None})

    def span(self, currency: str) -> tuple[date, date] | None:
        """First and last day the currency was published (EUR: the whole file), without parsing its rates."""
        if currency == EUR:
            return self.first_day, self.last_day
        values = self._columns.get(currency.lower())
        if values is None:
            return None
        published = [i for i, v in enumerate(values) if _published(v)]
        return (self.days[published[0]], self.days[published[-1]]) if published else None

    def series(self, currency: str) -> _Series | None:
        currency = currency.lower()
        if currency not in self._series:
            self._series[currency] = self._build(currency)
        return self._series[currency]

    def _build(self, currency: str) -> _Series | None:
        values = self._columns.get(currency)
        if values is None:
            return None
        pairs = [(d, Fraction(Decimal(v))) for d, v in zip(self.days, values, strict=True) if _published(v)]
        if not pairs:
            return None
        return _Series(pairs, until=_discontinued([d for d, _ in pairs], self.last_day))

    def digest_until(self, day: date) -> str:
        """A digest of every value published up to `day`: two histories with the same digest up to a day
        convert every day up to it alike, discontinued currencies aside (see `changed_after`)."""
        n = bisect_right(self.days, day)
        h = hashlib.sha256(repr(self.days[:n]).encode())
        for currency in sorted(self._columns):
            h.update(f"|{currency}:".encode() + "\x00".join(self._columns[currency][:n]).encode())
        return h.hexdigest()[:32]

    def changed_after(self, earlier_last_day: date) -> date:
        """The first day whose rates may differ between this history and the earlier one it extends (the
        same values up to `earlier_last_day`, its last day: `digest_until` tells): the day after that last
        day, or earlier for a currency whose discontinuation (no rate for DISCONTINUED_AFTER_DAYS) the new
        days decide one way or the other: from the day after its last rate."""
        first = earlier_last_day + timedelta(days=1)
        for values in self._columns.values():
            published = [self.days[i] for i, v in enumerate(values) if _published(v)]
            before = [d for d in published if d <= earlier_last_day]
            was = _discontinued(before, earlier_last_day)
            now = _discontinued(published, self.last_day)
            if was != now:
                first = min([first] + [d + timedelta(days=1) for d in (was, now) if d is not None])
        return first

    def per_eur(self, currency: str, day: date) -> Fraction | None:
        """Units of `currency` for 1 EUR in force on `day`."""
        if currency == EUR:
            return Fraction(1) if day >= self.first_day else None
        series = self.series(currency)
        return None if series is None else series.on(day)

    def cross(self, currency: str, reporting: str, day: date) -> Fraction | None:
        """Units of `reporting` for 1 unit of `currency` on `day`, crossed through EUR (exact)."""
        of_currency = self.per_eur(currency.lower(), day)
        of_reporting = self.per_eur(reporting.lower(), day)
        if of_currency is None or of_reporting is None:
            return None
        return of_reporting / of_currency


def _discontinued(published: list[date], last_day: date) -> date | None:
    """The last rate's day of a currency no longer published by `last_day` (None: still published);
    `published`: its days with a rate, oldest first."""
    if published and (last_day - published[-1]).days > DISCONTINUED_AFTER_DAYS:
        return published[-1]
    return None


def _published(value: str) -> bool:
    return value not in ("", "N/A")


def parse_ecb_csv(text: str, strict: bool = False) -> EcbHistory:
    """The ECB's history CSV (`Date,USD,JPY,...` then one row a day, `N/A` where not published).

    `strict` checks every value (an update from the network); the file shipped with the installation is
    parsed per currency when used.
    """
    lines = text.splitlines()
    header = [cell.strip() for cell in lines[0].split(",")] if lines else []
    if not header or header[0].lower() != "date" or len(header) < 2:
        raise RatesError("line 1: not the ECB's reference-rate history (expected a header `Date,USD,...`)")
    codes = [c.lower() for c in header[1:]]
    days: list[date] = []
    columns: dict[str, list[str]] = {c: [] for c in codes if c}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split(",")]
        try:
            days.append(date.fromisoformat(cells[0]))
        except ValueError:
            raise RatesError(f"line {number}: {cells[0][:20]!r} is not a date") from None
        cells += [""] * (len(header) - len(cells))
        for code, value in zip(codes, cells[1:], strict=False):
            if code:
                if strict:
                    _check_value(number, code, value)
                columns[code].append(value)
    if not days:
        raise RatesError("the file holds no rates")
    if len(set(days)) != len(days):
        raise RatesError("the file lists a day twice")
    return EcbHistory(days, columns)


def _check_value(number: int, code: str, value: str) -> None:
    if not _published(value):
        return
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        raise RatesError(f"line {number}: {code.upper()} {value[:20]!r} is not a number") from None
    if not parsed.is_finite() or parsed <= 0:
        raise RatesError(f"line {number}: {code.upper()} {value[:20]!r} is not a positive rate")


# -- the table a rebuild converts with -----------------------------------------------------------------------
class RateTable:
    """The rates of one reporting currency: imported ones where they cover the day, else the ECB's."""

    def __init__(
        self, rates: Iterable[Rate] = (), reporting: str = "", ecb: EcbHistory | None = None
    ) -> None:
        by_currency: dict[str, list[tuple[date, Fraction]]] = defaultdict(list)
        for r in rates:
            by_currency[r.currency.lower()].append((r.day, Fraction(r.rate)))
        self._imported = {c: _Series(pairs) for c, pairs in by_currency.items()}
        self.reporting = reporting.lower()
        self.ecb = ecb

    def rate_on(self, currency: str, day: date) -> Fraction | None:
        """Units of the reporting currency for 1 unit of `currency` in force on `day`, or None."""
        currency = currency.lower()
        imported = self._imported.get(currency)
        if imported is not None:
            rate = imported.on(day)
            if rate is not None:
                return rate
        if self.ecb is None or not self.reporting:
            return None
        return self.ecb.cross(currency, self.reporting, day)
