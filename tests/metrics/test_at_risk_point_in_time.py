"""Each signal judged at an instant with what was true then, and the materiality thresholds (docs/at-risk.md).

Every case is built by hand: monthly periods on calendar month starts, $50 a seat, figures worked in comments.
"""

from __future__ import annotations

from datetime import UTC, datetime

from metrics.at_risk import (
    CustomerRecords,
    InvoiceState,
    LicensedLine,
    RevenueLine,
    SubscriptionState,
    Thresholds,
    UsagePeriod,
    UsageSeries,
    evaluate,
    mrr_at,
)
from metrics.calendar import moment_ts


def ts(year: int, month: int, day: int = 1) -> int:
    while month > 12:
        year, month = year + 1, month - 12
    return moment_ts(datetime(year, month, day, tzinfo=UTC))


def seat_lines(
    quantities: list[int], year: int = 2026, first: int = 1, price: str = "price_pro", unit: int = 5000
):
    """One invoiced line per month from `first`, the invoice created on the period's first day."""
    return [
        LicensedLine(
            "si_1",
            "Pro",
            price,
            ts(year, first + n),
            ts(year, first + n + 1),
            q,
            q * unit,
            "usd",
            0,
            "month",
            ts(year, first + n),
        )
        for n, q in enumerate(quantities)
    ]


def records(**changes: object) -> CustomerRecords:
    base: dict[str, object] = {
        "customer_id": "cus_1",
        "name": "Acme",
        "mrr": 280000,
        "currency": "usd",
        "subscriptions": (SubscriptionState("sub_1", "active", ts(2026, 1), None, interval="month"),),
        "licensed": tuple(seat_lines([56] * 11)),
    }
    base.update(changes)
    return CustomerRecords(**base)  # type: ignore[arg-type]


def codes_at(rec: CustomerRecords, t: int, current: bool = False) -> list[str]:
    found = evaluate(rec, t, rec.mrr, current)
    return [] if found is None else [c for c in found.codes if c != "renewal_soon"]


# -- payment_failed ---------------------------------------------------------------------------------
def test_an_invoice_unpaid_at_t_but_paid_after_t_is_a_failed_payment_at_t_only() -> None:
    # created Oct 1, first attempt failed, paid on the second attempt on Oct 9
    invoice = InvoiceState("in_1", "paid", ts(2026, 10), 2, 280000, "usd", ts(2026, 10, 9))
    rec = records(invoices=(invoice,))
    assert codes_at(rec, ts(2026, 10, 5)) == ["payment_failed"]
    assert codes_at(rec, ts(2026, 10, 9)) == []  # paid at that instant
    assert codes_at(rec, ts(2026, 9, 30)) == []  # not yet invoiced
    # paid at the first attempt: never a failed payment
    first_time = InvoiceState("in_1", "paid", ts(2026, 10), 1, 280000, "usd", ts(2026, 10, 9))
    assert codes_at(records(invoices=(first_time,)), ts(2026, 10, 5)) == []


def test_an_invoice_voided_later_counts_until_it_was_voided() -> None:
    invoice = InvoiceState("in_1", "void", ts(2026, 10), 3, 280000, "usd", ts(2026, 10, 20))
    rec = records(invoices=(invoice,))
    assert codes_at(rec, ts(2026, 10, 19)) == ["payment_failed"]
    assert codes_at(rec, ts(2026, 10, 20)) == []


# -- cancel_scheduled -------------------------------------------------------------------------------
def test_a_cancellation_scheduled_after_t_is_invisible_at_t() -> None:
    sub = SubscriptionState(
        "sub_1", "active", ts(2026, 1), ts(2026, 12), cancel_at_period_end=True, canceled_at=ts(2026, 11, 10)
    )
    rec = records(subscriptions=(sub,))
    assert codes_at(rec, ts(2026, 11, 9)) == []
    assert codes_at(rec, ts(2026, 11, 10)) == ["cancel_scheduled"]
    # flags without the date they were set are only known for the present
    undated = SubscriptionState("sub_1", "active", ts(2026, 1), ts(2026, 12), cancel_at_period_end=True)
    assert codes_at(records(subscriptions=(undated,)), ts(2026, 11, 20)) == []
    assert codes_at(records(subscriptions=(undated,)), ts(2026, 11, 20), current=True) == ["cancel_scheduled"]


# -- seats ------------------------------------------------------------------------------------------
def test_one_seat_of_56_is_noise_six_is_a_signal() -> None:
    # 56 seats Jan..Sep; October 55: 1.8% below the 90-day high, under the 10% threshold
    assert codes_at(records(licensed=tuple(seat_lines([56] * 9 + [55] * 2))), ts(2026, 10, 15)) == []
    # October 50: 6 of 56 is 10.7% below the high of 56
    cut = records(licensed=tuple(seat_lines([56] * 9 + [50] * 2)))
    found = evaluate(cut, ts(2026, 10, 15), cut.mrr, False)
    assert found is not None and found.codes == ("usage_decline", "renewal_soon")
    assert found.signals[0].detail == "Pro: seats 56 -> 50 (highest of 90 days)"


def test_seats_come_from_the_invoice_known_at_t() -> None:
    # the November invoice (50 seats) is created on Nov 1: on Oct 31 the customer still had 56
    rec = records(licensed=tuple(seat_lines([56] * 10 + [50])))
    assert codes_at(rec, ts(2026, 10, 31)) == []
    assert codes_at(rec, ts(2026, 11, 1)) == ["usage_decline"]


def test_a_seat_cut_is_not_also_a_downgrade() -> None:
    # 56 -> 40 seats under the same price: licensed MRR $2,800 -> $2,000 (-29%), all of it seats
    rec = records(licensed=tuple(seat_lines([56] * 9 + [40] * 2)))
    assert codes_at(rec, ts(2026, 10, 15)) == ["usage_decline"]


def test_a_price_change_is_a_downgrade() -> None:
    # the same 56 seats moved to a $40 price in October: $2,800 -> $2,240, 20% below the high
    lines = seat_lines([56] * 9) + seat_lines([56] * 2, first=10, price="price_lite", unit=4000)
    found = evaluate(records(licensed=tuple(lines)), ts(2026, 10, 15), 224000, False)
    assert found is not None and found.codes == ("downgrade", "renewal_soon")
    assert (
        found.signals[0].detail
        == "licensed MRR $2,800.00 -> $2,240.00 since 2026-07-17 (cheaper plan Pro -> Pro)"
    )


def test_a_small_price_change_is_not_material() -> None:
    # $50 -> $47 a seat: 6% below the high, under the 10% threshold
    lines = seat_lines([56] * 9) + seat_lines([56] * 2, first=10, price="price_lite", unit=4700)
    assert codes_at(records(licensed=tuple(lines)), ts(2026, 10, 15)) == []


def test_thresholds_are_configurable() -> None:
    rec = records(licensed=tuple(seat_lines([56] * 9 + [55] * 2)))
    loose = Thresholds(seat_drop=0.01)
    found = evaluate(rec, ts(2026, 10, 15), rec.mrr, False, loose)
    assert found is not None and found.codes[0] == "usage_decline"


# -- metered usage and the seasonal guard -----------------------------------------------------------
def usage(values: list[float], year: int = 2025, first: int = 1) -> UsageSeries:
    """Monthly usage from January of `year`, each month billed on the 1st of the next."""
    periods = tuple(
        UsagePeriod(ts(year, first + n), ts(year, first + n + 1), v) for n, v in enumerate(values)
    )
    return UsageSeries("si_api", "API calls", "billed", periods)


def test_a_first_december_dip_is_a_signal() -> None:
    # Sep..Nov 2025 at 1,000; December 2025 at 600 (40% below), no December before it on record
    series = usage([1000] * 11 + [600])
    assert codes_at(records(usage=(series,)), ts(2026, 1, 5)) == ["usage_decline"]


def test_a_december_dip_seen_the_year_before_is_not_a_signal() -> None:
    # December 2025 was 600 after 1,000 a month (40% below its three months before, more than 15%);
    # December 2026 at 600 again after 1,000: seasonal, not a risk
    seats = tuple(seat_lines([56] * 25, year=2025))
    series = usage([1000] * 11 + [600] + [1000] * 11 + [600])
    assert codes_at(records(usage=(series,), licensed=seats), ts(2027, 1, 5)) == []
    # the same dip a year after a December that held up (950: 5% below) is a signal
    steady = usage([1000] * 11 + [950] + [1000] * 11 + [600])
    assert codes_at(records(usage=(steady,), licensed=seats), ts(2027, 1, 5)) == ["usage_decline"]


def test_a_usage_fall_under_25_percent_is_noise() -> None:
    series = usage([1000] * 11 + [800])  # 20% below
    assert codes_at(records(usage=(series,)), ts(2026, 1, 5)) == []


# -- bad input ---------------------------------------------------------------------------------------
def test_thin_or_empty_histories_give_no_signal_and_no_crash() -> None:
    empty = CustomerRecords("cus_0", "Empty", 1000, "usd")
    assert evaluate(empty, ts(2026, 6), 1000, False) is None
    three = usage([1000, 1000, 100])  # fewer than 4 billed periods
    assert codes_at(records(usage=(three,)), ts(2025, 4, 2)) == []
    # a date before the first invoice
    assert codes_at(records(), ts(2025, 6)) == []
    assert evaluate(records(), ts(2026, 6), 0, False) is None  # not paying: never at risk


def test_mrr_at_an_instant_comes_from_the_counted_lines() -> None:
    lines = [RevenueLine(ts(2026, 1), ts(2026, 2), 5000), RevenueLine(ts(2026, 1, 15), ts(2026, 3), 2000)]
    assert mrr_at(lines, ts(2026, 1, 20)) == 7000
    assert mrr_at(lines, ts(2026, 2, 1)) == 2000
    assert mrr_at(lines, ts(2026, 3, 1)) == 0
