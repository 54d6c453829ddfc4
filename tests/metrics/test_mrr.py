"""Monthly normalization (docs/mrr.md) with figures worked out by hand in each test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.mrr import (
    CountedLine,
    LedgerEntry,
    Point,
    customer_snapshots,
    monthly_amount,
    monthly_exact,
    mrr_at,
    round_div,
    to_reporting,
)
from metrics.records import LineRecord
from tests.support.line_helpers import record_from_line
from worker.demo import builders as b

DAY = 86_400
START = 1_767_225_600  # 2026-01-01


def _sub_line(amount: int, price: dict, days: int = 31, **kw: object) -> LineRecord:
    line = b.line(
        "il_1",
        "in_1",
        amount,
        (START, START + days * DAY),
        price_obj=price,
        subscription="sub_1",
        subscription_item="si_1",
        currency=price["currency"],
        **kw,
    )  # type: ignore[arg-type]
    return record_from_line(line, price)


@pytest.mark.parametrize(
    "interval,count,amount,expected",
    [
        ("year", 1, 120000, 10000),  # 1,200.00 a year = 100.00 a month
        ("month", 3, 30000, 10000),  # quarterly: 300.00 / 3
        ("month", 1, 10000, 10000),
        ("week", 1, 2500, 10833),  # 25.00 x 52 / 12 = 108.3333 -> 108.33
        ("day", 1, 100, 3042),  # 1.00 x 365 / 12 = 30.4166 -> 30.42
        ("week", 2, 5000, 10833),  # every two weeks: 50.00 x 26 / 12 = 108.33
    ],
)
def test_interval_normalization(interval: str, count: int, amount: int, expected: int) -> None:
    price = b.price("price_x", "prod_x", amount, interval=interval, interval_count=count)
    assert monthly_amount(_sub_line(amount, price)) == expected


def test_seats_count_the_line_amount() -> None:
    """5 seats at 20.00: the line amount already holds quantity x unit price."""
    price = b.price("price_seat", "prod_x", 2000)
    assert monthly_amount(_sub_line(10000, price, quantity=5)) == 10000


def test_forever_coupon_is_subtracted_every_period() -> None:
    price = b.price("price_m", "prod_x", 10000)
    assert monthly_amount(_sub_line(10000, price, discounts=[2000])) == 8000  # 20% off forever


def test_full_discount_gives_zero() -> None:
    price = b.price("price_m", "prod_x", 10000)
    assert monthly_amount(_sub_line(10000, price, discounts=[10000])) == 0


@pytest.mark.parametrize("legacy", [False, True])
def test_inclusive_tax_is_taken_out_and_exclusive_tax_is_ignored(legacy: bool) -> None:
    price = b.price("price_m", "prod_x", 12000, tax_behavior="inclusive")
    assert monthly_amount(_sub_line(12000, price, taxes=[(2000, "inclusive")], legacy=legacy)) == 10000
    excl = b.price("price_e", "prod_x", 10000, tax_behavior="exclusive")
    assert monthly_amount(_sub_line(10000, excl, taxes=[(2000, "exclusive")], legacy=legacy)) == 10000


def test_metered_line_is_normalized_like_any_recurring_line() -> None:
    price = b.price("price_api", "prod_api", None, usage_type="metered", meter="mtr_1")
    record = _sub_line(4321, price)
    assert record.usage_type == "metered" and monthly_amount(record) == 4321


def test_zero_decimal_currency() -> None:
    """12,000 yen a year is 1,000 yen a month: no minor unit, no factor 100."""
    price = b.price("price_jp", "prod_x", 12000, currency="jpy", interval="year")
    assert monthly_amount(_sub_line(12000, price)) == 1000


def test_line_without_recurring_price_uses_period_days() -> None:
    """100.00 for 30 days: 100.00 x 30.4375 / 30 = 101.4583 -> 101.46 a month."""
    line = b.line(
        "il_1", "in_1", 10000, (START, START + 30 * DAY), subscription="sub_1", subscription_item="si_1"
    )
    assert monthly_amount(record_from_line(line)) == 10146


def test_rounding_is_half_even_per_line() -> None:
    price = b.price("price_2m", "prod_x", 5, interval="month", interval_count=2)
    assert monthly_amount(_sub_line(5, price)) == 2  # 2.5 -> 2
    assert monthly_amount(_sub_line(7, price)) == 4  # 3.5 -> 4


def test_conversion_between_exponents() -> None:
    """1,000 yen at 0.0067 USD = 6.70 USD = 670 cents; 10.00 USD at 150 JPY = 1,500 yen."""
    assert to_reporting(Fraction(1000), "jpy", "usd", Decimal("0.0067")) == 670
    assert to_reporting(Fraction(1000), "usd", "jpy", Decimal("150")) == 1500
    assert to_reporting(Fraction(10000), "eur", "usd", Decimal("1.08")) == 10800


def test_missing_rate_is_never_one_to_one() -> None:
    assert to_reporting(Fraction(10000), "eur", "usd", None) is None
    assert to_reporting(Fraction(10000), "usd", "usd", None) == 10000


def test_conversion_rounds_once_from_the_exact_amount() -> None:
    """A weekly 25.00 EUR line is 108.3333 EUR a month; at 3 that is 325.00 USD (not 108.33 x 3 = 324.99)."""
    price = b.price("price_w", "prod_x", 2500, currency="eur", interval="week")
    exact = monthly_exact(_sub_line(2500, price))
    assert to_reporting(exact, "eur", "usd", Decimal("3")) == 32500


def test_mrr_at_counts_lines_whose_period_covers_t() -> None:
    lines = [CountedLine("c1", 0, 100, 500), CountedLine("c1", 100, 200, 700), CountedLine("c2", 50, 60, 300)]
    assert mrr_at(lines, 0) == {"c1": 500}
    assert mrr_at(lines, 100) == {"c1": 700}  # period.start <= t < period.end
    assert mrr_at(lines, 55) == {"c1": 500, "c2": 300}
    assert mrr_at(lines, 200) == {}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 50),
            st.integers(1, 50),
            st.integers(0, 10**9),
            st.sampled_from(["day", "week", "month", "year", None]),
            st.integers(1, 12),
        ),
        max_size=30,
    ),
    st.integers(0, 100),
)
def test_mrr_is_never_negative_for_non_negative_lines(rows: list, t: int) -> None:
    lines = []
    for customer, start, length, amount, interval, count in rows:
        record = LineRecord(
            id="l",
            invoice_id="i",
            customer_id=customer,
            currency="usd",
            amount=amount,
            period_start=start * DAY,
            period_end=(start + length) * DAY,
            interval=interval,
            interval_count=count,
        )
        monthly = monthly_amount(record)
        assert monthly >= 0
        lines.append(CountedLine(customer, record.period_start, record.period_end, monthly))
    assert all(v > 0 for v in mrr_at(lines, t * DAY).values())


def _month(t: int) -> tuple[int, int]:
    when = datetime.fromtimestamp(t, UTC)
    return when.year, when.month


entries = st.lists(
    st.tuples(
        st.sampled_from(["recurring", "one_time"]),
        st.integers(0, 90),
        st.integers(0, 90),
        st.integers(-500, 5000),
    ),
    max_size=25,
)


@given(entries, st.lists(st.integers(0, 90), min_size=1, max_size=6, unique=True))
def test_customer_snapshots_match_the_definition(rows: list, instants: list[int]) -> None:
    """At each point: MRR = max(0, sum of recurring lines with start <= t < end), the plan of the largest
    line, one_time = one-time amounts invoiced in the point's calendar month; a row only where one of them is
    not 0."""
    lines = [
        LedgerEntry(k, a * DAY, b * DAY, amount, amount, a * DAY, f"plan{i}", f"l{i:02d}")
        for i, (k, a, b, amount) in enumerate(rows)
    ]
    points = [Point(date(2000, 1, 1) + timedelta(days=t), t * DAY, _month(t * DAY)) for t in sorted(instants)]
    expected = []
    for p in points:
        rec = [e for e in lines if e.klass == "recurring" and e.start <= p.t < e.end]
        total = max(0, sum(e.monthly for e in rec))
        one = sum(e.amount for e in lines if e.klass == "one_time" and _month(e.invoiced_at or 0) == p.month)
        largest = min(rec, key=lambda e: (-e.monthly, e.line_id)) if rec and total > 0 else None
        if total > 0 or one != 0:
            expected.append((p.day, total, one, largest.plan if largest else None))
    assert customer_snapshots(lines, points) == expected


def test_round_div_is_half_even_for_negative_amounts_too() -> None:
    assert [round_div(n, 2) for n in (-5, -3, -1, 1, 3, 5)] == [-2, -2, 0, 0, 2, 2]
    assert round_div(10, 3) == 3 and round_div(-10, 3) == -3 and round_div(11, 3) == 4
