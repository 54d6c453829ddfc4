"""A 20-month company on the local Stripe server, synced for real, then `retention mrr --json` at two dates.

Every expected figure below is worked out by hand from the objects built here (see the comments), not read
back from the code: monthly 100.00 Pro, annual 2,400.00 (= 200.00 a month), an upgrade 50.00 -> 150.00 in
January 2026, a customer canceled on 2025-11-01, a EUR customer at 100.00 EUR converted at 1.10, a quarterly
300.00 plan in the older API shape (= 100.00 a month), a one-time setup fee (never MRR), a void and a draft
invoice (ignored).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, TypedDict, Unpack

from typer.testing import CliRunner

from metrics.calendar import day_ts
from worker.cli.main import app
from worker.db import ensure_schema
from worker.demo import builders as b
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.secrets import Secret
from worker.settings import get_settings

Obj = dict[str, Any]


def months(first: tuple[int, int], last: tuple[int, int], step: int = 1) -> list[tuple[int, int]]:
    out, (y, m) = [], first
    while (y, m) <= last:
        out.append((y, m))
        y, m = y + (m + step - 1) // 12, (m + step - 1) % 12 + 1
    return out


def plus(y: int, m: int, n: int) -> tuple[int, int]:
    return y + (m + n - 1) // 12, (m + n - 1) % 12 + 1


class Billing(TypedDict, total=False):
    """How one invoice differs from a usual one: its currency (usd), status (paid) or the older API shape."""

    currency: str
    status: str
    legacy: bool


class Company:
    def __init__(self) -> None:
        self.objs: list[Obj] = []
        self.n = 0

    def billed(
        self,
        customer: str,
        sub: str,
        item: str,
        price: Obj,
        ym: tuple[int, int],
        n_months: int,
        amount: int,
        **options: Unpack[Billing],
    ) -> None:
        currency = options.get("currency", "usd")
        status = options.get("status", "paid")
        legacy = options.get("legacy", False)
        self.n += 1
        start, end = day_ts(date(*ym, 1)), day_ts(date(*plus(*ym, n_months), 1))
        line = b.line(
            f"il_{self.n}",
            f"in_{self.n}",
            amount,
            (start, end),
            currency=currency,
            price_obj=price,
            subscription=sub,
            subscription_item=item,
            legacy=legacy,
        )
        self.objs.append(
            b.invoice(
                f"in_{self.n}",
                customer,
                [line],
                status=status,
                created=start,
                currency=currency,
                subscription=sub,
                period=(start, end),
                legacy=legacy,
            )
        )

    def subscription(
        self,
        sub: str,
        customer: str,
        item: str,
        price: Obj,
        ym: tuple[int, int],
        n_months: int,
        currency: str = "usd",
        **kw: Any,
    ) -> None:
        period = (day_ts(date(*ym, 1)), day_ts(date(*plus(*ym, n_months), 1)))
        self.objs.append(
            b.subscription(
                sub, customer, [b.subscription_item(item, sub, price, period=period)], currency=currency, **kw
            )
        )


def company() -> list[Obj]:
    c = Company()
    pro = b.price("price_pro", "prod_pro", 10000)
    annual = b.price("price_annual", "prod_ent", 240000, interval="year")
    starter = b.price("price_starter", "prod_starter", 5000)
    business = b.price("price_biz", "prod_biz", 15000)
    small = b.price("price_small", "prod_starter", 8000)
    euro = b.price("price_eur", "prod_pro", 10000, currency="eur")
    quarterly = b.price("price_q", "prod_pro", 30000, interval="month", interval_count=3)
    setup = b.price("price_setup", "prod_setup", 100000, interval=None)
    c.objs += [
        b.product("prod_pro", "Pro"),
        b.product("prod_ent", "Enterprise"),
        b.product("prod_starter", "Starter"),
        b.product("prod_biz", "Business"),
        b.product("prod_setup", "Setup"),
        pro,
        annual,
        starter,
        business,
        small,
        euro,
        quarterly,
        setup,
    ]
    names = {
        "cus_1": "Monthly Co",
        "cus_2": "Annual Co",
        "cus_3": "Upgrade Co",
        "cus_4": "Churned Co",
        "cus_5": "Euro GmbH",
        "cus_6": "Setup Only",
        "cus_7": "Legacy Quarterly",
    }
    c.objs += [b.customer(cid, name, created=day_ts(date(2025, 1, 1))) for cid, name in names.items()]
    # cus_1: Pro 100.00 every month, 2025-01 .. 2026-08; a void duplicate in 2025-09 and a draft for 2026-09.
    for ym in months((2025, 1), (2026, 8)):
        c.billed("cus_1", "sub_1", "si_1", pro, ym, 1, 10000)
    c.billed("cus_1", "sub_1", "si_1", pro, (2025, 9), 1, 99900, status="void")
    c.billed("cus_1", "sub_1", "si_1", pro, (2026, 9), 1, 10000, status="draft")
    c.subscription("sub_1", "cus_1", "si_1", pro, (2026, 8), 1)
    # cus_2: Enterprise 2,400.00 a year from 2025-03, renewed 2026-03: 200.00 a month.
    for ym in ((2025, 3), (2026, 3)):
        c.billed("cus_2", "sub_2", "si_2", annual, ym, 12, 240000)
    c.subscription("sub_2", "cus_2", "si_2", annual, (2026, 3), 12)
    # cus_3: Starter 50.00 2025-06 .. 2025-12, then Business 150.00 from 2026-01.
    for ym in months((2025, 6), (2025, 12)):
        c.billed("cus_3", "sub_3", "si_3", starter, ym, 1, 5000)
    for ym in months((2026, 1), (2026, 8)):
        c.billed("cus_3", "sub_3", "si_3", business, ym, 1, 15000)
    c.subscription("sub_3", "cus_3", "si_3", business, (2026, 8), 1)
    # cus_4: 80.00 a month 2025-01 .. 2025-10, canceled at the end of October.
    for ym in months((2025, 1), (2025, 10)):
        c.billed("cus_4", "sub_4", "si_4", small, ym, 1, 8000)
    c.subscription(
        "sub_4",
        "cus_4",
        "si_4",
        small,
        (2025, 10),
        1,
        status="canceled",
        canceled_at=day_ts(date(2025, 11, 1)),
        ended_at=day_ts(date(2025, 11, 1)),
    )
    # cus_5: 100.00 EUR a month from 2025-02; at the ECB's rates, then at 1.10 once that rate is imported.
    for ym in months((2025, 2), (2026, 8)):
        c.billed("cus_5", "sub_5", "si_5", euro, ym, 1, 10000, currency="eur")
    c.subscription("sub_5", "cus_5", "si_5", euro, (2026, 8), 1, currency="eur")
    # cus_6: a one-time 1,000.00 setup fee in 2025-09, nothing recurring.
    c.n += 1
    setup_day = day_ts(date(2025, 9, 3))
    fee = b.line(f"il_{c.n}", f"in_{c.n}", 100000, (setup_day, setup_day), price_obj=setup)
    c.objs.append(b.invoice(f"in_{c.n}", "cus_6", [fee], created=setup_day))
    # cus_7: older API shape, 300.00 every quarter from 2025-01: 100.00 a month.
    for ym in months((2025, 1), (2026, 7), step=3):
        c.billed("cus_7", "sub_7", "si_7", quarterly, ym, 3, 30000, legacy=True)
    c.subscription("sub_7", "cus_7", "si_7", quarterly, (2026, 7), 3, legacy=True)
    return c.objs


def _mrr(cli: CliRunner, day: str) -> dict[str, Any]:
    result = cli.invoke(app, ["mrr", "acme", "--as-of", day, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_sync_then_mrr_at_two_dates(cli: CliRunner, tmp_path: Path) -> None:
    from worker.accounts import connect_account
    from worker.syncing import run_sync

    world = StripeWorld()
    world.add_all(company())
    settings = get_settings()
    engine = ensure_schema(settings.database_url)
    with FakeStripe(world) as server:
        account = connect_account(engine, settings, "acme", Secret("sk_test_123"), server.url, "usd", None, 0)
        assert run_sync(engine, settings, account, full=True).ok
    rates = tmp_path / "rates.csv"
    rates.write_text("date,currency,rate\n2025-01-01,EUR,1.10\n")

    before = _mrr(cli, "2025-09-15")
    assert "warnings" not in before  # EUR converts at the ECB's rate with nothing imported
    # the line of 2025-09-01 (a Monday) at that day's ECB rate, 1 EUR = 1.1715 USD
    assert {c["id"]: c["mrr"] for c in before["customers"]}["cus_5"] == 117.15

    assert cli.invoke(app, ["rates", "import", str(rates)]).exit_code == 0
    sep = _mrr(cli, "2025-09-15")
    assert "warnings" not in sep
    # 100 Pro + 200 Enterprise + 50 Starter + 80 (not yet canceled) + 110 EUR + 100 quarterly = 640.00
    assert sep["mrr"] == 640.0
    assert {c["id"]: (c["mrr"], c["plan"]) for c in sep["customers"]} == {
        "cus_1": (100.0, "Pro"),
        "cus_2": (200.0, "Enterprise"),
        "cus_3": (50.0, "Starter"),
        "cus_4": (80.0, "Starter"),
        "cus_5": (110.0, "Pro"),
        "cus_7": (100.0, "Pro"),
    }
    assert sep["customers"][0] == {"id": "cus_2", "name": "Annual Co", "mrr": 200.0, "plan": "Enterprise"}

    apr = _mrr(cli, "2026-04-15")
    # cus_4 churned in November; cus_3 now on Business 150.00: 100 + 200 + 150 + 110 + 100 = 660.00
    assert apr["mrr"] == 660.0
    assert {c["id"]: c["mrr"] for c in apr["customers"]} == {
        "cus_1": 100.0,
        "cus_2": 200.0,
        "cus_3": 150.0,
        "cus_5": 110.0,
        "cus_7": 100.0,
    }

    moves = json.loads(cli.invoke(app, ["movements", "acme", "--json"]).stdout)
    by_month = {m["month"]: m for m in moves["months"]}
    assert by_month["2025-11"]["churn"] == -80.0  # cus_4's last period ended on 2025-11-01
    assert by_month["2026-01"]["expansion"] == 100.0  # cus_3: 50.00 -> 150.00
    assert by_month["2025-06"]["new"] == 50.0 and by_month["2025-03"]["new"] == 200.0
