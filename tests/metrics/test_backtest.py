"""The backtest on a small company worked by hand (docs/at-risk.md, "How good are these alerts").

As of 2027-01-01 the twelve points are the 1st of each month from P1 = 2025-10-01 to P12 = 2026-09-01.
Churn dates count from P1 + 28 days = 2025-10-29 to P12 + 120 days = 2026-12-30. Every customer pays a flat
monthly amount from 2025-01-01 (one counted line per calendar month) until the day named; no seats, no usage.

| customer | MRR | evidence | pays until |
|---|---|---|---|
| A | $100 | cancellation asked 2026-02-15, ends 2026-04-01 | 2026-04-01 |
| B | $200 | invoice of 2026-05-10, 4 attempts, written off 2026-07-20 | 2026-07-01 |
| C | $300 | cancellation asked 2026-07-25, ends 2026-08-01 (sudden) | 2026-08-01 |
| D | $100 | invoice of 2025-12-20 paid at the 2nd attempt on 2026-01-10 | beyond |
| E | $500 | invoice of 2026-02-20 paid at the 2nd attempt 2026-03-05; $400 from 2026-05-01 | beyond |
| F | $100 | none | beyond |
| G | $100 | none | 2025-10-15 (before the span) |
| H | $100 | cancellation asked 2025-10-20, ends 2026-04-15 | 2026-04-15 |
| I | $100 | none | 2026-12-20 |

Flags (point: customers): P2 Nov 1: H; P3 Dec 1: H; P4 Jan 1: H, D; P5 Feb 1: H; P6 Mar 1: A, E, H;
P7 Apr 1: H; P9 Jun 1: B. That is 10 flags.
Hits (MRR at 0 or <= 90% within 120 days): A at Mar 1 (0 on Apr 1); B at Jun 1 (0 on Jul 1); E at Mar 1
($400 <= $450 on May 1); H at Jan 1, Feb 1, Mar 1, Apr 1 (0 on Apr 15; Nov 1 + 120 = Feb 28 and Dec 1 + 120
= Mar 31 are too early); D is not. 7 hits: precision 7/10 = 0.7.
Per signal: cancel_scheduled A 1 + H 6 = 7 flags, 1 + 4 = 5 hits (0.7143); payment_failed B, D, E = 3 flags,
2 hits (0.6667).
Churners in the span: A (Apr 1), B (Jul 1), C (Aug 1), H (Apr 15), I (Dec 20); G left before it.
Caught (flagged 28..150 days before): A Mar 1 -> 31 days; B Jun 1 -> 30 days; H Dec 1 -> 135 days (Nov 1 is
166 days, too early; Apr 1 is 14, too late). C and I are missed.
Recall by MRR 125 days before churn: (100 + 200 + 100) / (100 + 200 + 300 + 100 + 100) = 400 / 800 = 0.5;
by count 3 of 5. Median lead: median(30, 31, 135) = 31 days.
Noise: paying / flagged per point: P1 9/0, P2-P5 8/1, 8/1, 8/2, 8/1, P6 8/3, P7 7/1, P8 6/0, P9 6/1, P10 5/0,
P11 4/0, P12 4/0: the largest share is 3/8 = 0.375 (Mar 1).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from metrics.at_risk import CustomerRecords, InvoiceState, RevenueLine, SubscriptionState
from metrics.backtest import backtest_of, backtest_points
from metrics.calendar import moment_ts

AS_OF = datetime(2027, 1, 1, tzinfo=UTC)


def ts(year: int, month: int, day: int = 1) -> int:
    return moment_ts(datetime(year, month, day, tzinfo=UTC))


def monthly(dollars: int, until: int, start: int | None = None) -> list[RevenueLine]:
    """One line per calendar month from `start` (default 2025-01-01), the last cut at `until`."""
    lines, t = [], start or ts(2025, 1)
    while t < until:
        d = datetime.fromtimestamp(t, UTC)
        nxt = ts(d.year + (d.month == 12), d.month % 12 + 1)
        lines.append(RevenueLine(t, min(nxt, until), dollars * 100))
        t = nxt
    return lines


def company(
    cid: str,
    dollars: int,
    until: int,
    subs: tuple[SubscriptionState, ...] = (),
    invoices: tuple[InvoiceState, ...] = (),
    extra: list[RevenueLine] | None = None,
) -> CustomerRecords:
    return CustomerRecords(
        f"cus_{cid}", cid, 0, "usd", subs, invoices, revenue=tuple(monthly(dollars, until) + (extra or []))
    )


def cancelled(cid: str, asked: int, ends: int) -> SubscriptionState:
    return SubscriptionState(
        f"sub_{cid}", "canceled", ts(2025, 1), None, True, ends, canceled_at=asked, ended_at=ends
    )


BEYOND = ts(2027, 6)


def customers() -> list[CustomerRecords]:
    return [
        company("A", 100, ts(2026, 4), subs=(cancelled("A", ts(2026, 2, 15), ts(2026, 4)),)),
        company(
            "B",
            200,
            ts(2026, 7),
            invoices=(
                InvoiceState("in_B", "uncollectible", ts(2026, 5, 10), 4, 20000, "usd", ts(2026, 7, 20)),
            ),
        ),
        company("C", 300, ts(2026, 8), subs=(cancelled("C", ts(2026, 7, 25), ts(2026, 8)),)),
        company(
            "D",
            100,
            BEYOND,
            invoices=(InvoiceState("in_D", "paid", ts(2025, 12, 20), 2, 10000, "usd", ts(2026, 1, 10)),),
        ),
        company(
            "E",
            500,
            ts(2026, 5),
            invoices=(InvoiceState("in_E", "paid", ts(2026, 2, 20), 2, 50000, "usd", ts(2026, 3, 5)),),
            extra=monthly(400, BEYOND, start=ts(2026, 5)),
        ),
        company("F", 100, BEYOND),
        company("G", 100, ts(2025, 10, 15)),
        company("H", 100, ts(2026, 4, 15), subs=(cancelled("H", ts(2025, 10, 20), ts(2026, 4, 15)),)),
        company("I", 100, ts(2026, 12, 20)),
    ]


def test_the_points_are_the_as_of_day_minus_4_to_15_months() -> None:
    points = backtest_points(datetime(2027, 1, 1, 15, 30, tzinfo=UTC))
    assert [p.date() for p in points] == [date(2025, 10, 1)] + [
        date(2025 + (m > 12), (m - 1) % 12 + 1, 1) for m in range(11, 22)
    ]
    assert points[-1] == datetime(2026, 9, 1, tzinfo=UTC)


def test_a_small_company_worked_by_hand() -> None:
    result = backtest_of(customers(), AS_OF)
    assert (result.flags, result.hits, result.precision) == (10, 7, 0.7)
    assert result.by_signal == {"cancel_scheduled": (7, 5), "payment_failed": (3, 2)}
    assert [(c.customer_id, c.churned_on, c.mrr, c.lead_days) for c in result.churners] == [
        ("cus_A", date(2026, 4, 1), 10000, 31),
        ("cus_H", date(2026, 4, 15), 10000, 135),
        ("cus_B", date(2026, 7, 1), 20000, 30),
        ("cus_C", date(2026, 8, 1), 30000, None),
        ("cus_I", date(2026, 12, 20), 10000, None),
    ]
    assert result.recall == 0.5
    assert len(result.caught) == 3
    assert result.median_lead_days == 31
    assert result.per_point == [
        (9, 0),
        (8, 1),
        (8, 1),
        (8, 2),
        (8, 1),
        (8, 3),
        (7, 1),
        (6, 0),
        (6, 1),
        (5, 0),
        (4, 0),
        (4, 0),
    ]
    assert result.noise == 0.375
    assert result.warnings() == []


def test_fewer_than_five_churners_carry_a_warning_and_none_says_so() -> None:
    few = backtest_of([c for c in customers() if c.customer_id != "cus_I"], AS_OF)
    assert [w["code"] for w in few.warnings()] == ["too_few_churners"]
    assert "too few churners to judge" in few.warnings()[0]["message"]
    none = backtest_of([c for c in customers() if c.customer_id in ("cus_D", "cus_F")], AS_OF)
    assert none.churners == [] and none.recall is None and none.median_lead_days is None
    assert [w["code"] for w in none.warnings()] == ["no_churners"]
