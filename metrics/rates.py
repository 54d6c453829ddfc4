"""Exchange rates the user supplies (`retention rates import FILE.csv`) and the rate in force on a day.

A CSV row `date,currency,rate` means: from that date on, 1 unit of currency = rate units of the reporting
currency (docs/mrr.md). A line is converted at the rate in force on its period start; before a currency's
first rate there is no rate, and the line is left out with a `missing_rate` warning rather than counted 1:1.
"""

from __future__ import annotations

import csv
import io
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

HEADER = ("date", "currency", "rate")


class RatesError(ValueError):
    """A CSV the importer refuses; the message names the line and what is wrong."""


@dataclass(frozen=True, slots=True)
class Rate:
    day: date
    currency: str
    rate: Decimal


def parse_rates_csv(text: str) -> list[Rate]:
    """Every row of a rates CSV, validated; any bad row refuses the whole file (nothing half-imported)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header) != HEADER:
        raise RatesError("the first line must be the header `date,currency,rate`")
    rates: list[Rate] = []
    for number, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 3:
            raise RatesError(f"line {number}: expected 3 columns date,currency,rate, got {len(row)}")
        rates.append(_parse_row(number, row))
    if not rates:
        raise RatesError("the file has no rates after the header")
    return rates


def _parse_row(number: int, row: list[str]) -> Rate:
    day_text, currency, rate_text = (cell.strip() for cell in row)
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise RatesError(f"line {number}: date {day_text!r} is not YYYY-MM-DD") from None
    if len(currency) != 3 or not currency.isalpha():
        raise RatesError(f"line {number}: currency {currency!r} is not a 3-letter code")
    try:
        rate = Decimal(rate_text)
    except InvalidOperation:
        raise RatesError(f"line {number}: rate {rate_text!r} is not a number") from None
    if not rate.is_finite() or rate <= 0:
        raise RatesError(f"line {number}: rate {rate_text!r} must be a positive number")
    return Rate(day, currency.lower(), rate)


class RateTable:
    """Rates by currency, sorted by day, for `rate_on` lookups in O(log n)."""

    def __init__(self, rates: Iterable[Rate]) -> None:
        by_currency: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
        for r in rates:
            by_currency[r.currency.lower()].append((r.day, r.rate))
        self._days: dict[str, list[date]] = {}
        self._rates: dict[str, list[Decimal]] = {}
        for currency, pairs in by_currency.items():
            pairs.sort()
            self._days[currency] = [d for d, _ in pairs]
            self._rates[currency] = [r for _, r in pairs]

    def rate_on(self, currency: str, day: date) -> Decimal | None:
        """The rate in force on `day` (the latest on or before it), or None."""
        days = self._days.get(currency.lower())
        if not days:
            return None
        i = bisect_right(days, day)
        return None if i == 0 else self._rates[currency.lower()][i - 1]
