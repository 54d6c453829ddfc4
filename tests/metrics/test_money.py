"""Minor units and zero-decimal currencies at the edges (docs/mrr.md), and the one money format."""

from __future__ import annotations

from decimal import Decimal

from metrics.money import exponent, fmt, fmt_major, json_amount, to_major, to_minor


def test_zero_decimal_currencies_have_no_minor_unit() -> None:
    assert exponent("JPY") == 0 and exponent("krw") == 0 and exponent("usd") == 2
    assert to_major(5000, "jpy") == Decimal("5000")
    assert fmt(5000, "jpy") == "¥5,000"
    assert fmt(-1234567, "JPY") == "-¥1,234,567"  # no decimals and no division by 100
    assert fmt_major(5000.0, "jpy") == "¥5,000"
    assert fmt(1500, "clp") == "1,500 CLP"


def test_two_decimal_currencies() -> None:
    assert to_major(150000, "usd") == Decimal("1500.00")
    assert json_amount(150000, "usd") == 1500.0
    assert json_amount(-1, "usd") == -0.01
    assert fmt(150000, "usd") == "$1,500.00"
    assert fmt(150000, "chf") == "1,500.00 CHF"
    assert fmt(99, "eur") == "€0.99" and fmt(5, "gbp") == "£0.05"


def test_negatives_carry_the_sign_before_the_symbol() -> None:
    assert fmt(-5215, "usd") == "-$52.15"
    assert fmt(-5215, "chf") == "-52.15 CHF"
    assert fmt(-1, "eur") == "-€0.01"
    assert fmt_major(-52.15, "usd") == "-$52.15"


def test_large_amounts_are_grouped() -> None:
    assert fmt(20263452, "usd") == "$202,634.52"
    assert fmt(123456789012345, "usd") == "$1,234,567,890,123.45"
    assert fmt(-123456789012, "jpy") == "-¥123,456,789,012"


def test_whole_units_round_half_even() -> None:
    assert fmt(1800049, "usd", whole=True) == "$18,000"
    assert fmt(1800050, "usd", whole=True) == "$18,000"  # half to even
    assert fmt(1800150, "usd", whole=True) == "$18,002"
    assert fmt(-5260, "usd", whole=True) == "-$53"
    assert fmt(5000, "jpy", whole=True) == "¥5,000"


def test_major_units_come_back_exactly() -> None:
    assert to_minor(202634.52, "usd") == 20263452
    assert to_minor(0.1 + 0.2, "usd") == 30  # a float's noise never adds a cent
    assert to_minor(5000.0, "jpy") == 5000
    assert fmt_major(None, "usd") == "—"
