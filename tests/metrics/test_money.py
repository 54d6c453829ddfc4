"""Minor units and zero-decimal currencies at the edges (docs/mrr.md)."""

from __future__ import annotations

from decimal import Decimal

from metrics.money import exponent, fmt, json_amount, to_major


def test_zero_decimal_currencies_have_no_minor_unit() -> None:
    assert exponent("JPY") == 0 and exponent("krw") == 0 and exponent("usd") == 2
    assert to_major(5000, "jpy") == Decimal("5000")
    assert fmt(5000, "jpy") == "¥5,000"


def test_two_decimal_currencies() -> None:
    assert to_major(150000, "usd") == Decimal("1500.00")
    assert json_amount(150000, "usd") == 1500.0
    assert json_amount(-1, "usd") == -0.01
    assert fmt(150000, "usd") == "$1,500.00"
    assert fmt(150000, "chf") == "1,500.00 CHF"
