"""A company served by the local Stripe server, synced for real, then `retention metrics --json`.

Every expected figure is worked out by hand from the objects built here:
- 30 customers on Pro (100.00 a month) from 2025-01, still paying;
- 5 customers on Pro from 2025-01, canceled at 2026-01-01 (churn 500.00);
- "Upgrade Co" on Starter 50.00 from 2025-03, on Business 1,500.00 from 2026-01 (expansion 1,450.00);
- "Downgrade Co" on Business 1,500.00 from 2025-01, on Pro 100.00 from 2026-03 (contraction 1,400.00);
- "Annual Co" on Enterprise 24,000.00 a year from 2025-05-15, renewed 2026-05-15 (2,000.00 a month; it
  started mid-month, so its signup month is 2025-05 although the first month-start snapshot is June's);
- "New Co" on Pro from 2025-09 (after the T12M window's start: in no T12M cohort);
- a 3,000.00 implementation fee invoiced to one Pro customer on 2026-06-01 (never MRR).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from typer.testing import CliRunner

from metrics.calendar import day_ts
from worker.accounts import connect_account
from worker.cli.main import app
from worker.db import ensure_schema
from worker.demo import builders as b
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.metrics_run import metric_history
from worker.secrets import Secret
from worker.settings import get_settings
from worker.syncing import run_sync

Obj = dict[str, Any]


def next_month(y: int, m: int) -> tuple[int, int]:
    return (y + 1, 1) if m == 12 else (y, m + 1)


def month_range(first: tuple[int, int], last: tuple[int, int]) -> list[tuple[int, int]]:
    out = [first]
    while out[-1] != last:
        out.append(next_month(*out[-1]))
    return out


class Company:
    def __init__(self) -> None:
        self.objs: list[Obj] = []
        self.n = 0

    def invoice(
        self,
        customer: str,
        sub: str | None,
        item: str | None,
        price: Obj,
        period: tuple[int, int],
        amount: int,
    ) -> None:
        self.n += 1
        line = b.line(
            f"il_{self.n}",
            f"in_{self.n}",
            amount,
            period,
            price_obj=price,
            subscription=sub,
            subscription_item=item,
        )
        self.objs.append(
            b.invoice(f"in_{self.n}", customer, [line], created=period[0], subscription=sub, period=period)
        )

    def monthly(
        self, customer: str, sub: str, price: Obj, first: tuple[int, int], last: tuple[int, int]
    ) -> None:
        for y, m in month_range(first, last):
            self.invoice(
                customer,
                sub,
                f"si_{sub}",
                price,
                (day_ts(date(y, m, 1)), day_ts(date(*next_month(y, m), 1))),
                price["unit_amount"],
            )

    def subscription(self, customer: str, sub: str, price: Obj, period: tuple[int, int], **kw: Any) -> None:
        item = b.subscription_item(f"si_{sub}", sub, price, period=period)
        self.objs.append(b.subscription(sub, customer, [item], **kw))


def company() -> list[Obj]:
    c = Company()
    pro = b.price("price_pro", "prod_pro", 10_000)
    starter = b.price("price_starter", "prod_starter", 5_000)
    business = b.price("price_biz", "prod_biz", 150_000)
    annual = b.price("price_ent", "prod_ent", 2_400_000, interval="year")
    fee = b.price("price_setup", "prod_setup", 300_000, interval=None)
    c.objs += [
        b.product("prod_pro", "Pro"),
        b.product("prod_starter", "Starter"),
        b.product("prod_biz", "Business"),
        b.product("prod_ent", "Enterprise"),
        b.product("prod_setup", "Implementation"),
        pro,
        starter,
        business,
        annual,
        fee,
    ]
    june = (day_ts(date(2026, 6, 1)), day_ts(date(2026, 7, 1)))
    for i in range(30):
        cid = f"cus_pro{i:02d}"
        c.objs.append(b.customer(cid, f"Pro {i}", created=day_ts(date(2025, 1, 1))))
        c.monthly(cid, f"sub_pro{i:02d}", pro, (2025, 1), (2026, 6))
        c.subscription(cid, f"sub_pro{i:02d}", pro, june)
    for i in range(5):
        cid = f"cus_gone{i}"
        c.objs.append(b.customer(cid, f"Gone {i}", created=day_ts(date(2025, 1, 1))))
        c.monthly(cid, f"sub_gone{i}", pro, (2025, 1), (2025, 12))
        c.subscription(
            cid,
            f"sub_gone{i}",
            pro,
            (day_ts(date(2025, 12, 1)), day_ts(date(2026, 1, 1))),
            status="canceled",
            canceled_at=day_ts(date(2026, 1, 1)),
            ended_at=day_ts(date(2026, 1, 1)),
        )
    c.objs.append(b.customer("cus_up", "Upgrade Co", created=day_ts(date(2025, 3, 1))))
    c.monthly("cus_up", "sub_up", starter, (2025, 3), (2025, 12))
    c.monthly("cus_up", "sub_up", business, (2026, 1), (2026, 6))
    c.subscription("cus_up", "sub_up", business, june)
    c.objs.append(b.customer("cus_down", "Downgrade Co", created=day_ts(date(2025, 1, 1))))
    c.monthly("cus_down", "sub_down", business, (2025, 1), (2026, 2))
    c.monthly("cus_down", "sub_down", pro, (2026, 3), (2026, 6))
    c.subscription("cus_down", "sub_down", pro, june)
    c.objs.append(b.customer("cus_annual", "Annual Co", created=day_ts(date(2025, 5, 15))))
    for year in (2025, 2026):
        c.invoice(
            "cus_annual",
            "sub_annual",
            "si_sub_annual",
            annual,
            (day_ts(date(year, 5, 15)), day_ts(date(year + 1, 5, 15))),
            2_400_000,
        )
    c.subscription("cus_annual", "sub_annual", annual, (day_ts(date(2026, 5, 15)), day_ts(date(2027, 5, 15))))
    c.objs.append(b.customer("cus_new", "New Co", created=day_ts(date(2025, 9, 1))))
    c.monthly("cus_new", "sub_new", pro, (2025, 9), (2026, 6))
    c.subscription("cus_new", "sub_new", pro, june)
    c.invoice("cus_pro00", None, None, fee, (day_ts(date(2026, 6, 1)), day_ts(date(2026, 6, 1))), 300_000)
    return c.objs


def test_sync_then_metrics_at_a_fixed_date(cli: CliRunner) -> None:
    world = StripeWorld()
    world.add_all(company())
    settings = get_settings()
    engine = ensure_schema(settings.database_url)
    with FakeStripe(world) as server:
        account = connect_account(engine, settings, "acme", Secret("sk_test_123"), server.url, "usd", None, 0)
        assert run_sync(engine, settings, account, full=True).ok

    result = cli.invoke(app, ["metrics", "acme", "--as-of", "2026-06-01", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["as_of"], out["currency"]) == ("2026-06-01", "usd")
    # 30 x 100 + 1,500 + 100 + 2,000 + New Co 100
    assert out["mrr"] == 6_700.0

    t12m = out["t12m"]
    # cohort at 2025-06-01: 30 + 5 Pro, Upgrade Co (Starter 50), Downgrade Co (1,500), Annual Co (2,000): 38
    assert (t12m["customers"], t12m["retained"]) == (38, 33)
    assert (t12m["start"], t12m["expansion"], t12m["contraction"], t12m["churn"], t12m["end"]) == (
        7_050.0,
        1_450.0,
        1_400.0,
        500.0,
        6_600.0,
    )
    assert t12m["nrr"] == round(6_600 / 7_050, 4)
    assert t12m["grr"] == round(5_150 / 7_050, 4)
    assert t12m["logo_retention"] == round(33 / 38, 4)
    assert t12m["nrr_including_one_time"] == round((6_600 + 3_000) / 7_050, 4)  # the June fee at t1
    assert [w["code"] for w in t12m["warnings"]] == ["expansion_concentration"]  # all of it is Upgrade Co

    monthly = out["monthly"]
    # cohort at 2026-05-01: 30 Pro, Upgrade Co 1,500, Downgrade Co 100, Annual Co 2,000, New Co 100; no change
    assert (monthly["customers"], monthly["start"], monthly["end"]) == (34, 6_700.0, 6_700.0)
    assert (monthly["nrr"], monthly["grr"], monthly["logo_retention"], monthly["nrr_annualized"]) == (
        1.0,
        1.0,
        1.0,
        1.0,
    )
    assert monthly["warnings"] == []
    assert [(w["code"], w["message"].split(":")[0]) for w in out["warnings"]] == [
        ("expansion_concentration", "T12M")
    ]

    plan = out["segments"]["plan"]
    assert {name: (w["customers"], w["start"], w["end"]) for name, w in plan.items()} == {
        "Pro": (35, 3_500.0, 3_000.0),
        "Starter": (1, 50.0, 1_500.0),
        "Business": (1, 1_500.0, 100.0),
        "Enterprise": (1, 2_000.0, 2_000.0),
    }
    assert [w["code"] for w in plan["Starter"]["warnings"]] == ["small_cohort", "expansion_concentration"]
    size = out["segments"]["size"]
    assert {name: w["customers"] for name, w in size.items()} == {"<100": 1, "100-1k": 35, "1k-10k": 2}
    cohort = out["segments"]["cohort"]
    assert {name: w["customers"] for name, w in cohort.items()} == {"2025-01": 36, "2025-03": 1, "2025-05": 1}

    moves = {m["month"]: m for m in out["movements"]}
    assert moves["2025-01"]["new"] == 3_500.0 + 1_500.0
    assert moves["2025-06"]["new"] == 2_000.0  # Annual Co, first seen at a month start in June
    assert moves["2025-09"]["new"] == 100.0
    assert (moves["2026-01"]["churn"], moves["2026-01"]["expansion"]) == (-500.0, 1_450.0)
    assert moves["2026-03"]["contraction"] == -1_400.0
    assert moves["2026-06"]["mrr"] == 6_700.0

    assert out["summary"]["sentence"] == (
        "NRR 93.6% is pulled down by contraction ($1,400) and churn ($500), which expansion ($1,450) "
        "does not make up."
    )
    [run] = metric_history(engine, account)  # the command stored its run
    assert run["as_of"] == "2026-06-01" and run["t12m"]["nrr"] == t12m["nrr"]
