"""Segments of a cohort: plan, size band and signup cohort (docs/retention.md).

Every segment is a partition of the cohort at t0, so its aggregates fold back into the headline exactly. Size
bands are edges in major units of the reporting currency (configurable), compared in minor units so that a
customer at exactly $100.00 falls in the 100-1k band, not below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from metrics.money import exponent

NO_PLAN = "(no plan)"


def _short(value: Decimal) -> str:
    """100 -> "100", 1000 -> "1k", 10000 -> "10k", 2500 -> "2.5k"."""
    if value >= 1000:
        k = value / 1000
        return f"{k.normalize():f}k"
    return f"{value.normalize():f}"


@dataclass(frozen=True)
class SizeBands:
    """Ascending edges in major units a month; n edges make n + 1 bands."""

    edges: tuple[Decimal, ...] = (Decimal(100), Decimal(1000), Decimal(10000))

    def __post_init__(self) -> None:
        if not self.edges or list(self.edges) != sorted(set(self.edges)) or self.edges[0] <= 0:
            raise ValueError(f"size band edges must be positive and strictly ascending, got {self.edges}")

    @classmethod
    def parse(cls, text: str) -> SizeBands:
        """From `100,1000,10000` (major units)."""
        try:
            return cls(tuple(Decimal(part.strip()) for part in text.split(",") if part.strip()))
        except ArithmeticError as exc:
            raise ValueError(f"size band edges {text!r} are not numbers: use e.g. 100,1000,10000") from exc

    def minor_edges(self, currency: str) -> list[int]:
        scale = Decimal(10) ** exponent(currency)
        return [int(edge * scale) for edge in self.edges]

    def labels(self) -> list[str]:
        """`<100`, `100-1k`, `1k-10k`, `>=10k` for the default edges."""
        short = [_short(e) for e in self.edges]
        middle = [f"{lo}-{hi}" for lo, hi in zip(short, short[1:], strict=False)]
        return [f"<{short[0]}", *middle, f">={short[-1]}"]

    def label_for(self, mrr_minor: int, currency: str) -> str:
        return self.labels()[band_index(mrr_minor, self.minor_edges(currency))]


DEFAULT_SIZE_BANDS = SizeBands()


def band_index(mrr_minor: int, minor_edges: Sequence[int]) -> int:
    """Index of the band: the number of edges at or below the amount."""
    return sum(1 for edge in minor_edges if mrr_minor >= edge)


def cohort_label(year: int, month: int) -> str:
    """Signup cohort label, `2025-03`."""
    return f"{year:04d}-{month:02d}"


def plan_label(plan: str | None) -> str:
    return plan if plan else NO_PLAN
