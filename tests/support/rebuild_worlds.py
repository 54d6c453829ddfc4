"""Small Stripe accounts for ledger tests: the rebuild's own tests and the commands that read the ledger
(`retention mrr`, `explain`, `rates import`) store the same worlds, so an expected figure means the same
thing in both."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from metrics.calendar import day_start, day_ts
from worker.demo import builders as b

Obj = dict[str, Any]


def T(y: int, m: int, d: int = 1) -> int:
    """Unix seconds of 00:00 UTC on that day (Stripe's timestamps)."""
    return day_ts(date(y, m, d))


def at(y: int, m: int, d: int = 1) -> datetime:
    """00:00 UTC on that day, as the ledger queries take an instant."""
    return day_start(date(y, m, d))


def monthly_world() -> list[Obj]:
    """Alpha pays 100.00 a month (Jan-Mar 2026) plus a 500.00 setup fee and has a void invoice; Beta pays
    1200.00 a year from January and cancels on 2026-03-10."""
    prod = b.product("prod_pro", "Pro")
    monthly = b.price("price_m", "prod_pro", 10000)
    yearly = b.price("price_y", "prod_pro", 120000, interval="year")
    objs = [prod, monthly, yearly, b.customer("cus_a", "Alpha"), b.customer("cus_b", "Beta")]
    months = [(T(2026, 1), T(2026, 2)), (T(2026, 2), T(2026, 3)), (T(2026, 3), T(2026, 4))]
    for i, period in enumerate(months):
        ln = b.line(
            f"il_a{i}",
            f"in_a{i}",
            10000,
            period,
            price_obj=monthly,
            subscription="sub_a",
            subscription_item="si_a",
        )
        objs.append(b.invoice(f"in_a{i}", "cus_a", [ln], created=period[0], subscription="sub_a"))
    setup = b.line("il_setup", "in_setup", 50000, (T(2026, 1, 5), T(2026, 1, 5)))
    objs.append(b.invoice("in_setup", "cus_a", [setup], created=T(2026, 1, 5)))
    voided = b.line(
        "il_void",
        "in_void",
        99900,
        (T(2026, 2), T(2026, 3)),
        price_obj=monthly,
        subscription="sub_a",
        subscription_item="si_a",
    )
    objs.append(b.invoice("in_void", "cus_a", [voided], status="void", created=T(2026, 2)))
    item = b.subscription_item("si_a", "sub_a", monthly, period=(T(2026, 3), T(2026, 4)))
    objs.append(b.subscription("sub_a", "cus_a", [item]))
    yl = b.line(
        "il_b",
        "in_b",
        120000,
        (T(2026, 1), T(2027, 1)),
        price_obj=yearly,
        subscription="sub_b",
        subscription_item="si_b",
    )
    objs.append(b.invoice("in_b", "cus_b", [yl], created=T(2026, 1), subscription="sub_b"))
    # Beta cancels immediately on 2026-03-10: no MRR after that, though the annual period runs on.
    yitem = b.subscription_item("si_b", "sub_b", yearly, period=(T(2026, 1), T(2027, 1)))
    objs.append(
        b.subscription(
            "sub_b", "cus_b", [yitem], status="canceled", ended_at=T(2026, 3, 10), canceled_at=T(2026, 3, 10)
        )
    )
    return objs


def euro_world() -> list[Obj]:
    """One customer paying 100.00 EUR a month from 2026-03-01 (a Sunday), in an account reporting in USD:
    converted at the ECB's rate of Friday 2026-02-27 (1 EUR = 1.1805 USD) unless a rate is imported."""
    return priced_world("eur", (T(2026, 3), T(2026, 4)))


def priced_world(
    currency: str, period: tuple[int, int], amount: int = 10000, customer: str = "cus_e", n: int = 0
) -> list[Obj]:
    """One customer paying `amount` minor units of `currency` a month over `period`; `n` keeps the ids of
    several such customers apart in one world."""
    price = b.price(f"price_{currency}_{n}", "prod_pro", amount, currency=currency)
    line = b.line(
        f"il_{currency}_{n}",
        f"in_{currency}_{n}",
        amount,
        period,
        price_obj=price,
        currency=currency,
        subscription=f"sub_{currency}_{n}",
        subscription_item=f"si_{currency}_{n}",
    )
    invoice = b.invoice(
        f"in_{currency}_{n}",
        customer,
        [line],
        created=period[0],
        currency=currency,
        subscription=f"sub_{currency}_{n}",
    )
    return [b.product("prod_pro", "Pro"), price, b.customer(customer, customer.title()), invoice]
