"""Money as integer minor units with a currency; conversion to major units only at the edges (JSON, text).

Zero-decimal currencies have no minor unit (docs/mrr.md): 5000 jpy is five thousand yen. Every amount a person
reads (terminal, Slack, the report, warnings) is written by `fmt` / `fmt_major` here, so there is one money
format: the sign first (`-$52.15`), thousands grouped, the symbol where it names one currency only, else the
ISO code after the figure (`1,500.00 CHF`).
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

# Symbols a reader takes for one currency only. "$" alone could be CAD, AUD, ...; by convention (and in
# Stripe's dashboard) it means USD, and the other dollars keep their code. ¥ is JPY's (CNY shows its code).
SYMBOLS = {
    "usd": "$",
    "eur": "€",
    "gbp": "£",
    "jpy": "¥",
    "inr": "₹",
    "krw": "₩",
    "ils": "₪",
    "ngn": "₦",
    "php": "₱",
    "vnd": "₫",
    "uah": "₴",
    "try": "₺",
}


def exponent(currency: str) -> int:
    return 0 if currency.lower() in ZERO_DECIMAL else 2


def to_major(minor: int, currency: str) -> Decimal:
    """Exact major units: 150000 usd -> Decimal('1500.00'); 5000 jpy -> Decimal('5000')."""
    exp = exponent(currency)
    return (Decimal(minor) / (Decimal(10) ** exp)).quantize(Decimal(1).scaleb(-exp))


def to_minor(major: float | Decimal, currency: str) -> int:
    """Back from a major-unit figure (a JSON number, at most cents) to exact minor units."""
    exact = Decimal(str(major)) * (10 ** exponent(currency))
    return int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))


def json_amount(minor: int, currency: str) -> float:
    """A JSON number in major units, to cents (docs/interface.md); the only place money becomes a float."""
    return float(to_major(minor, currency).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def fmt(minor: int, currency: str, whole: bool = False) -> str:
    """Human text: `$1,500.00`, `-$52.15`, `¥5,000`, `1,500.00 CHF`; `whole` rounds to major units
    (`$18,000`) for sentences and wide tables where cents add nothing."""
    value = to_major(minor, currency)
    if whole:
        value = value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    sign = "-" if value < 0 else ""
    text = f"{abs(value):,}"
    symbol = SYMBOLS.get(currency.lower())
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"


def fmt_major(value: float | Decimal | None, currency: str, whole: bool = False) -> str:
    """`fmt` for a figure already in major units (the JSON payloads the tables are drawn from); None is a
    dash, never $0.00."""
    if value is None:
        return "—"
    return fmt(to_minor(value, currency), currency, whole=whole)
