"""Each at-risk signal, its absence on a steady account, the renewal rule and the score (docs/at-risk.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from metrics.at_risk import (
    CustomerRecords,
    InvoiceState,
    LicensedLine,
    SubscriptionState,
    UsagePeriod,
    UsageSeries,
    assess,
    first_signal_day,
    rank,
    score,
)
from metrics.calendar import moment_ts

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
MONTH_STARTS = [datetime(2026, m, 1, tzinfo=UTC) for m in range(1, 12)] + [datetime(2026, 12, 1, tzinfo=UTC)]


def months(first: int, last: int) -> list[tuple[int, int]]:
    """(start, end) of each calendar month of 2026 from `first` to `last` (1-based, inclusive)."""
    return [(moment_ts(MONTH_STARTS[m - 1]), moment_ts(MONTH_STARTS[m])) for m in range(first, last + 1)]


def seats(
    quantities: list[int],
    unit: int = 5000,
    first: int = 1,
    price: str = "price_pro",
    label: str = "Pro",
    discount: int = 0,
) -> list[LicensedLine]:
    return [
        LicensedLine("si_1", label, price, start, end, q, q * unit - discount, "usd", discount, "month")
        for (start, end), q in zip(months(first, first + len(quantities) - 1), quantities, strict=True)
    ]


def usage(values: list[float], first: int = 6) -> UsageSeries:
    periods = tuple(
        UsagePeriod(start, end, v)
        for (start, end), v in zip(months(first, first + len(values) - 1), values, strict=True)
    )
    return UsageSeries("si_api", "API calls", "billed", periods)


def steady_sub(**changes: object) -> SubscriptionState:
    base: dict[str, object] = {
        "id": "sub_1",
        "status": "active",
        "created": moment_ts(MONTH_STARTS[0]),
        "current_period_end": moment_ts(MONTH_STARTS[11]),
        "interval": "month",
    }
    base.update(changes)
    return SubscriptionState(**base)  # type: ignore[arg-type]


def customer(**changes: object) -> CustomerRecords:
    base: dict[str, object] = {
        "customer_id": "cus_1",
        "name": "Acme",
        "mrr": 50000,
        "currency": "usd",
        "subscriptions": (steady_sub(),),
        "invoices": (InvoiceState("in_old", "paid", moment_ts(MONTH_STARTS[9]), 1, 50000, "usd"),),
        "usage": (usage([700, 650, 720, 690, 710]),),  # June..October, within the normal range
        "licensed": tuple(seats([10] * 11)),
    }
    base.update(changes)
    return CustomerRecords(**base)  # type: ignore[arg-type]


def codes(records: CustomerRecords, as_of: datetime = AS_OF) -> list[str]:
    found = assess(records, as_of)
    return [] if found is None else list(found.codes)


def test_a_steady_account_has_no_signal() -> None:
    # paid invoices, flat seats and price, usage moving within its normal range, renewal in 30 days
    assert assess(customer(), AS_OF) is None


def test_usage_decline_needs_a_25_percent_fall_against_the_three_periods_before() -> None:
    # July..September average (600+700+800)/3 = 700; October 300 is 57% lower
    found = assess(customer(usage=(usage([900, 600, 700, 800, 300]),)), AS_OF)
    assert found is not None and found.codes == ("usage_decline", "renewal_soon")
    assert (
        "300 in the period to 2026-11-01 vs 700 average of the 3 periods before (57% lower)"
        in found.signals[0].detail
    )
    # 526 is 24.9% below 700: still the normal range; 525 is exactly 25% below and counts
    assert codes(customer(usage=(usage([900, 600, 700, 800, 526]),))) == []
    assert codes(customer(usage=(usage([900, 600, 700, 800, 525]),)))[0] == "usage_decline"


def test_usage_decline_needs_three_earlier_periods_and_a_recent_last_period() -> None:
    assert codes(customer(usage=(usage([600, 800, 100]),))) == []
    # the item was removed in June: its last period (May) says nothing about November
    assert codes(customer(usage=(usage([700, 700, 700, 100], first=2),))) == []


def test_fewer_seats_over_90_days_is_a_usage_decline_only() -> None:
    # one piece of evidence, one signal: the seat cut (20% of 10) is not also a downgrade of the money
    found = assess(customer(licensed=tuple(seats([10] * 8 + [8] * 3))), AS_OF)
    assert found is not None and found.codes == ("usage_decline", "renewal_soon")
    assert found.signals[0].detail == "Pro: seats 10 -> 8 (highest of 90 days)"


def test_seats_that_fell_more_than_90_days_ago_are_no_signal() -> None:
    assert codes(customer(licensed=tuple(seats([10] * 5 + [8] * 6)))) == []


def test_a_cheaper_plan_is_a_downgrade() -> None:
    lines = seats([10] * 8, price="price_pro", label="Pro") + seats(
        [10] * 3, unit=2000, first=9, price="price_basic", label="Basic"
    )
    found = assess(customer(licensed=tuple(lines)), AS_OF)
    assert found is not None and found.codes == ("downgrade", "renewal_soon")
    assert found.signals[0].detail == (
        "licensed MRR $500.00 -> $200.00 since 2026-08-03 (cheaper plan Pro -> Basic)"
    )


def test_a_new_discount_is_a_downgrade() -> None:
    lines = seats([10] * 8) + seats([10] * 3, first=9, discount=10000)
    found = assess(customer(licensed=tuple(lines)), AS_OF)
    assert found is not None and found.codes == ("downgrade", "renewal_soon")
    detail = found.signals[0].detail
    assert "$500.00 -> $400.00" in detail and "new discount $100.00" in detail


def test_a_price_rise_is_not_a_downgrade() -> None:
    lines = seats([10] * 8) + seats([10] * 3, unit=6000, first=9, price="price_pro_2026")
    assert codes(customer(licensed=tuple(lines))) == []


def test_payment_failed_on_an_open_invoice_with_an_attempt() -> None:
    failed = InvoiceState("in_9", "open", moment_ts(datetime(2026, 10, 1, tzinfo=UTC)), 2, 50000, "usd")
    found = assess(customer(invoices=(failed,)), AS_OF)
    assert found is not None and found.codes == ("payment_failed", "renewal_soon")
    assert found.signals[0].detail == "invoice in_9 for $500.00 unpaid after 2 attempts (since 2026-10-01)"
    # an open invoice not yet attempted (sent to be paid by bank transfer) is not a failure
    not_tried = InvoiceState("in_9", "open", moment_ts(datetime(2026, 10, 1, tzinfo=UTC)), 0, 50000, "usd")
    assert codes(customer(invoices=(not_tried,))) == []


def test_past_due_subscription_is_a_failed_payment() -> None:
    found = assess(customer(subscriptions=(steady_sub(status="past_due"),)), AS_OF)
    assert found is not None and found.codes == ("payment_failed", "renewal_soon")
    assert found.signals[0].detail == "subscription sub_1 is past_due"


def test_cancel_scheduled_by_either_flag() -> None:
    end = moment_ts(MONTH_STARTS[11])
    at_end = assess(customer(subscriptions=(steady_sub(cancel_at_period_end=True),)), AS_OF)
    assert at_end is not None
    assert at_end.signals[0].detail == "subscription sub_1 cancels at period end on 2026-12-01"
    by_date = assess(customer(subscriptions=(steady_sub(cancel_at=end),)), AS_OF)
    assert by_date is not None and by_date.codes == ("cancel_scheduled", "renewal_soon")


def test_renewal_soon_only_with_another_signal_and_60_days_for_annual_plans() -> None:
    far = moment_ts(datetime(2026, 12, 20, tzinfo=UTC))  # 49 days away
    monthly = customer(subscriptions=(steady_sub(current_period_end=far, cancel_at_period_end=True),))
    assert codes(monthly) == ["cancel_scheduled"]
    annual_sub = steady_sub(current_period_end=far, interval="year", cancel_at_period_end=True)
    annual = customer(subscriptions=(annual_sub,))
    found = assess(annual, AS_OF)
    assert found is not None and found.codes == ("cancel_scheduled", "renewal_soon")
    assert found.renewal_date == date(2026, 12, 20)
    assert found.signals[1].detail == "annual plan renews on 2026-12-20 (in 49 days)"


def test_customers_not_paying_are_never_at_risk() -> None:
    assert assess(customer(mrr=0, subscriptions=(steady_sub(status="past_due"),)), AS_OF) is None


def test_score_is_mrr_at_risk_times_combined_signal_strength() -> None:
    found = assess(customer(subscriptions=(steady_sub(cancel_at_period_end=True),)), AS_OF)
    assert found is not None
    # $500 x (1 - (1 - 0.9)(1 - 0.2)) = $500 x 0.92
    assert found.score == 460.0
    # a big account with a weak signal outranks a small one with a strong signal only when the money says so
    tiny_failure = InvoiceState("in_1", "open", moment_ts(MONTH_STARTS[9]), 1, 1, "usd")
    big_weak = assess(customer(customer_id="cus_big", mrr=1_000_000, invoices=(tiny_failure,)), AS_OF)
    small_strong = assess(
        customer(customer_id="cus_small", mrr=10000, subscriptions=(steady_sub(cancel_at_period_end=True),)),
        AS_OF,
    )
    assert [a.customer_id for a in rank([small_strong, None, big_weak])] == ["cus_big", "cus_small"]
    assert score(0, "usd", found.signals) == 0.0


def test_history_uses_only_dated_evidence() -> None:
    # cancellation requested on 2026-09-15, subscription ended 2026-11-01
    requested, ended = moment_ts(datetime(2026, 9, 15, tzinfo=UTC)), moment_ts(MONTH_STARTS[10])
    sub = steady_sub(
        status="canceled",
        cancel_at_period_end=True,
        canceled_at=requested,
        ended_at=ended,
        current_period_end=ended,
    )
    records = customer(subscriptions=(sub,), licensed=tuple(seats([10] * 10)))
    assert assess(records, datetime(2026, 9, 14, tzinfo=UTC), current=False) is None
    assert first_signal_day(records, date(2026, 10, 31)) == date(2026, 9, 15)
    # without a canceled_at the flag cannot be dated: no signal in the past
    undated = customer(subscriptions=(steady_sub(cancel_at_period_end=True),))
    assert assess(undated, datetime(2026, 9, 1, tzinfo=UTC), current=False) is None
    assert first_signal_day(undated, date(2026, 10, 31)) is None


def test_history_of_a_failed_payment_starts_once_the_invoice_could_be_attempted() -> None:
    # created (and, without a date, finalized) at 00:00 on Oct 10: no payment was tried at that instant, so
    # the first day at 00:00 with a failed attempt behind it is Oct 11
    created = moment_ts(datetime(2026, 10, 10, tzinfo=UTC))
    written_off = moment_ts(datetime(2026, 10, 25, tzinfo=UTC))
    invoice = InvoiceState("in_9", "uncollectible", created, 4, 50000, "usd", written_off)
    records = customer(invoices=(invoice,))
    assert first_signal_day(records, date(2026, 10, 24)) == date(2026, 10, 11)
    # written off on the 25th: from then on it is no longer a payment being retried
    past = [assess(records, datetime(2026, 10, d, tzinfo=UTC), current=False) for d in (24, 25)]
    assert past[0] is not None and past[0].codes == ("payment_failed", "renewal_soon")
    assert past[1] is None
    # without the date of the write-off, the past cannot be told: no evidence
    undated = customer(invoices=(InvoiceState("in_9", "uncollectible", created, 4, 50000, "usd"),))
    assert first_signal_day(undated, date(2026, 10, 24)) is None


def test_a_move_from_per_seat_to_a_flat_plan_is_judged_on_money_not_seats() -> None:
    # 10 seats x $50 until August, then the same item on a flat $600 plan with quantity 1: MRR rose
    flat = [
        LicensedLine("si_1", "Flat", "price_flat", start, end, 1, 60000, "usd", 0, "month")
        for start, end in months(9, 11)
    ]
    assert codes(customer(licensed=tuple(seats([10] * 8) + flat))) == []
    # the same move to a $400 flat plan is a downgrade, never "fewer seats"
    cheaper = [
        LicensedLine("si_1", "Flat", "price_flat", start, end, 1, 40000, "usd", 0, "month")
        for start, end in months(9, 11)
    ]
    found = assess(customer(licensed=tuple(seats([10] * 8) + cheaper)), AS_OF)
    assert found is not None and found.codes == ("downgrade", "renewal_soon")
    assert found.signals[0].detail == (
        "licensed MRR $500.00 -> $400.00 since 2026-08-03 (cheaper plan Pro -> Flat)"
    )


def test_a_moving_exchange_rate_is_not_a_downgrade() -> None:
    # amounts are compared in the line's own currency: EUR 450 stays EUR 450
    eur = [
        LicensedLine("si_1", "Pro", "price_eur", start, end, 10, 45000, "eur", 0, "month")
        for start, end in months(1, 11)
    ]
    assert codes(customer(licensed=tuple(eur))) == []
