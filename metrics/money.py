"""Money as integer minor units with a currency; conversion to major units only at the edges (JSON, text).

Zero-decimal currencies have no minor unit (docs/mrr.md): 5000 jpy is five thousand yen.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)


def exponent(currency: str) -> int:
    return 0 if currency.lower() in ZERO_DECIMAL else 2


def to_major(minor: int, currency: str) -> Decimal:
    """Exact major units: 150000 usd -> Decimal('1500.00'); 5000 jpy -> Decimal('5000')."""
    exp = exponent(currency)
    return (Decimal(minor) / (Decimal(10) ** exp)).quantize(Decimal(1).scaleb(-exp))


def json_amount(minor: int, currency: str) -> float:
    """A JSON number in major units, to cents (docs/interface.md); the only place money becomes a float."""
    return float(to_major(minor, currency).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def fmt(minor: int, currency: str) -> str:
    """Human text: `$1,500.00`, `¥5,000`, `1,500.00 EUR`."""
    value = to_major(minor, currency)
    symbols = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}
    text = f"{value:,}"
    sym = symbols.get(currency.lower())
    return f"{sym}{text}" if sym else f"{text} {currency.upper()}"
