"""Rates CSV parsing and the rate in force on a day."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from metrics.rates import RatesError, RateTable, parse_rates_csv


def test_parse_and_lookup_the_rate_in_force() -> None:
    rates = parse_rates_csv(
        "date,currency,rate\n2026-01-01,EUR,1.08\n2026-03-01,eur,1.10\n2026-01-01,jpy,0.0067\n"
    )
    table = RateTable(rates)
    assert table.rate_on("eur", date(2025, 12, 31)) is None  # before the first rate: no rate, never 1:1
    assert table.rate_on("EUR", date(2026, 1, 1)) == Decimal("1.08")
    assert table.rate_on("eur", date(2026, 2, 28)) == Decimal("1.08")
    assert table.rate_on("eur", date(2026, 3, 1)) == Decimal("1.10")
    assert table.rate_on("jpy", date(2030, 1, 1)) == Decimal("0.0067")
    assert table.rate_on("gbp", date(2026, 6, 1)) is None


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("", "header"),
        ("day,cur,rate\n2026-01-01,eur,1\n", "header"),
        ("date,currency,rate\n", "no rates"),
        ("date,currency,rate\n2026-13-01,eur,1\n", "line 2: date '2026-13-01'"),
        ("date,currency,rate\n2026-01-01,euro,1\n", "line 2: currency 'euro'"),
        ("date,currency,rate\n2026-01-01,eur,1\n2026-01-02,eur,abc\n", "line 3: rate 'abc' is not a number"),
        ("date,currency,rate\n2026-01-01,eur,-1\n", "must be a positive number"),
        ("date,currency,rate\n2026-01-01,eur\n", "expected 3 columns"),
    ],
)
def test_bad_csv_is_refused_with_the_line(text: str, fragment: str) -> None:
    with pytest.raises(RatesError, match=None) as info:
        parse_rates_csv(text)
    assert fragment in str(info.value)
