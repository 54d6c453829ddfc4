"""Test helper: a small account whose customers each show one known risk (or none), as of 2026-11-01.

Monthly plans at $50 a seat, invoiced on the 1st from May to November 2026 (November's invoice opens the
current period, Nov 1 - Dec 1); API usage is billed in arrears at 1 cent a call. Each customer is built to
hold exactly the evidence its name says, so the tests' expectations come from this description, not from the
code.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.engine import Engine

from metrics.calendar import day_ts
from tests.support.stripe_rows import store
from worker.demo import builders as b
from worker.models import Account
from worker.rebuild import rebuild_account

Obj = dict[str, Any]
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
MONTHS = [5, 6, 7, 8, 9, 10, 11]
SEAT = 5000
SEATS = b.price("price_seat", "prod_team", SEAT)
CALLS = b.price("price_calls", "prod_api", 1, usage_type="metered")
METERED = b.price("price_meter", "prod_api", 1, usage_type="metered", meter="mtr_calls")


def T(month: int, day: int = 1, year: int = 2026) -> int:
    if month > 12:
        month, year = month - 12, year + 1
    return day_ts(date(year, month, day))


def catalog() -> list[Obj]:
    return [b.product("prod_team", "Team"), b.product("prod_api", "API calls"), SEATS, CALLS, METERED]


def customer(
    cid: str,
    name: str,
    seats: list[int],
    usage: list[int] | None = None,
    status: str = "active",
    last_invoice: str = "paid",
    last_attempts: int | None = None,
    metered_price: Obj | None = None,
    **sub: Any,
) -> list[Obj]:
    """Seats per month May..Nov; `usage` is calls in Apr..Oct, billed on the next month's invoice."""
    sub_id, seat_item, use_item = f"sub_{cid}", f"si_{cid}_seats", f"si_{cid}_calls"
    objs: list[Obj] = [b.customer(f"cus_{cid}", name, created=T(4))]
    for n, month in enumerate(MONTHS):
        inv = f"in_{cid}_{month}"
        lines = [
            b.line(
                f"il_{cid}_{month}",
                inv,
                seats[n] * SEAT,
                (T(month), T(month + 1)),
                price_obj=SEATS,
                subscription=sub_id,
                subscription_item=seat_item,
                quantity=seats[n],
            )
        ]
        if usage is not None:
            lines.append(
                b.line(
                    f"il_{cid}_{month}_u",
                    inv,
                    usage[n],
                    (T(month - 1), T(month)),
                    price_obj=metered_price or CALLS,
                    subscription=sub_id,
                    subscription_item=use_item,
                    quantity=usage[n],
                )
            )
        last = month == MONTHS[-1]
        objs.append(
            b.invoice(
                inv,
                f"cus_{cid}",
                lines,
                status=last_invoice if last else "paid",
                created=T(month),
                subscription=sub_id,
                period=(T(month), T(month + 1)),
                attempt_count=last_attempts if last else None,
            )
        )
    items = [b.subscription_item(seat_item, sub_id, SEATS, seats[-1], (T(11), T(12)))]
    if usage is not None or metered_price is not None:
        items.append(b.subscription_item(use_item, sub_id, metered_price or CALLS, None, (T(11), T(12))))
    objs.append(b.subscription(sub_id, f"cus_{cid}", items, status=status, created=T(5), **sub))
    return objs


def churned_customer() -> list[Obj]:
    """Asked on Aug 10 to cancel at the end of August; 20 seats until then."""
    sub_id, item = "sub_gone", "si_gone"
    objs: list[Obj] = [b.customer("cus_gone", "Gone Ltd", created=T(4))]
    for month in (5, 6, 7, 8):
        inv = f"in_gone_{month}"
        line = b.line(
            f"il_gone_{month}",
            inv,
            20 * SEAT,
            (T(month), T(month + 1)),
            price_obj=SEATS,
            subscription=sub_id,
            subscription_item=item,
            quantity=20,
        )
        objs.append(b.invoice(inv, "cus_gone", [line], created=T(month), subscription=sub_id))
    last_item = b.subscription_item(item, sub_id, SEATS, 20, (T(8), T(9)))
    objs.append(
        b.subscription(
            sub_id,
            "cus_gone",
            [last_item],
            status="canceled",
            created=T(5),
            cancel_at_period_end=True,
            canceled_at=T(8, 10),
            ended_at=T(9),
        )
    )
    return objs


def world() -> list[Obj]:
    return (
        catalog()
        + customer("steady", "Steady Co", [10] * 7, usage=[700, 650, 720, 690, 710, 700, 705])
        + customer("cancel", "Cancelling Inc", [5] * 7, cancel_at_period_end=True, canceled_at=T(10, 20))
        + customer(
            "failed", "Failing Payments LLC", [8] * 7, status="past_due", last_invoice="open", last_attempts=2
        )
        + customer("seats", "Shrinking Seats GmbH", [10, 10, 10, 10, 6, 6, 6])
        + customer("usage", "Falling Usage SAS", [2] * 7, usage=[500, 500, 500, 600, 700, 800, 300])
        + churned_customer()
    )


def load(engine: Engine, account: Account, objs: list[Obj] | None = None) -> None:
    store(engine, account, objs if objs is not None else world())
    rebuild_account(engine, account, today=AS_OF.date())
