"""rebuild_account over stored rows: classes, exclusions, upcoming periods, cancellation and snapshots."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from integrations.stripe.client import StripeConfig, StripeReader
from integrations.stripe.models import SyncState
from integrations.stripe.sync import Syncer
from metrics.ledger import ClassifiedLine, MrrSnapshot
from metrics.tables import table_of
from tests.support.rebuild_worlds import T, at, monthly_world, priced_world
from tests.support.stripe_rows import make_account, store
from tests.support.stripe_world import KEY, add_account, build_world
from worker import rebuild
from worker.demo import builders as b
from worker.demo.sample import build_sample_world
from worker.demo.stripe_server import FakeStripe
from worker.mrr_queries import ensure_snapshots, missing_rate_warnings, mrr_at
from worker.rates import import_rates
from worker.rebuild import ensure_ledger, ledger_is_stale, rebuild_account


def test_rebuild_classifies_and_snapshots(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, monthly_world())
    result = rebuild_account(engine, account, today=date(2026, 3, 20))
    assert result.by_class["recurring"] == 5 and result.by_class["one_time"] == 1
    assert result.excluded == {"void invoice": 1}
    with engine.connect() as conn:
        lines = {r.line_id: r for r in conn.execute(select(table_of(ClassifiedLine)))}
        assert lines["il_void"].counted is False and lines["il_void"].excluded_reason == "void invoice"
        assert lines["il_b"].monthly_reporting == 10000  # 1200.00 a year / 12
        assert lines["il_b"].mrr_end == T(2026, 3, 10)
        # Alpha on 2026-01-15: 100.00 a month; the 500.00 setup fee is one-time, not MRR; Beta 100.00.
        jan = {c.customer_id: c for c in mrr_at(conn, account.id or 0, at(2026, 1, 15))}
        assert jan["cus_a"].mrr == 10000 and jan["cus_a"].one_time == 50000 and jan["cus_a"].plan == "Pro"
        assert jan["cus_b"].mrr == 10000
        # After Beta's cancellation only Alpha pays.
        assert {c.customer_id: c.mrr for c in mrr_at(conn, account.id or 0, at(2026, 3, 15))} == {
            "cus_a": 10000
        }
        snaps = {(r.customer_id, r.day): r.mrr for r in conn.execute(select(table_of(MrrSnapshot)))}
    assert snaps[("cus_a", date(2026, 2, 1))] == 10000
    assert snaps[("cus_b", date(2026, 3, 1))] == 10000
    assert ("cus_b", date(2026, 3, 20)) not in snaps
    assert snaps[("cus_a", date(2026, 3, 20))] == 10000


def test_upcoming_period_counts_at_current_items(engine: Engine) -> None:
    """No invoice yet for April (a draft): the subscription's current items count, 3 seats x 100.00."""
    account = make_account(engine)
    objs = monthly_world()
    monthly = next(o for o in objs if o["id"] == "price_m")
    draft_line = b.line(
        "il_draft",
        "in_draft",
        30000,
        (T(2026, 4), T(2026, 5)),
        price_obj=monthly,
        subscription="sub_a",
        subscription_item="si_a",
        quantity=3,
    )
    objs.append(b.invoice("in_draft", "cus_a", [draft_line], status="draft", created=T(2026, 4)))
    for o in objs:
        if o["id"] == "sub_a":
            o["items"]["data"] = [
                b.subscription_item("si_a", "sub_a", monthly, quantity=3, period=(T(2026, 4), T(2026, 5)))
            ]
    store(engine, account, objs)
    result = rebuild_account(engine, account, today=date(2026, 4, 10))
    assert result.upcoming == 1 and result.excluded["draft invoice"] == 1
    with engine.connect() as conn:
        assert {c.customer_id: c.mrr for c in mrr_at(conn, account.id or 0, at(2026, 4, 10))} == {
            "cus_a": 30000
        }


def test_ensure_snapshots_only_fills_missing_days(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, monthly_world())
    rebuild_account(engine, account, today=date(2026, 3, 20))
    ensure_snapshots(engine, account, [date(2026, 1, 20), date(2026, 2, 1)])
    with engine.connect() as conn:
        snapshots = table_of(MrrSnapshot)
        rows = list(conn.execute(select(snapshots).where(snapshots.c.day == date(2026, 1, 20))))
    assert sorted((r.customer_id, r.mrr) for r in rows) == [("cus_a", 10000), ("cus_b", 10000)]


def test_a_day_added_on_demand_is_in_the_planners_statistics(pg_engine: Engine) -> None:
    """PostgreSQL: after the rebuild's ANALYZE every stored day is a common value; a day added later by
    ensure_snapshots (a metrics window's start) must be too, or the planner takes it for one row and joins a
    window's two days row by row."""
    world = build_sample_world(seed=4, customers=60, months=8, end=date(2026, 6, 1))
    objs = [
        o
        for kind in ("customer", "product", "price", "subscription")
        for o in world.collections[kind].by_id.values()
    ]
    invoices = world.collections["invoice"].by_id
    objs += [{**o, "lines": {**o["lines"], "data": world.invoice_lines[i]}} for i, o in invoices.items()]
    account = make_account(pg_engine)
    store(pg_engine, account, objs)
    rebuild_account(pg_engine, account, today=date(2026, 6, 10), full=True)
    added = date(2026, 4, 17)
    ensure_snapshots(pg_engine, account, [added])
    snapshots = table_of(MrrSnapshot)
    query = select(snapshots).where(snapshots.c.account_id == account.id, snapshots.c.day == added)
    with pg_engine.connect() as conn:
        rows = len(conn.execute(query).all())
        sql = str(query.compile(pg_engine, compile_kwargs={"literal_binds": True}))
        plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()
    assert rows > 20
    assert plan[0]["Plan"]["Plan Rows"] > rows // 2  # not the single row of a day missing from the statistics


def _mrr(engine: Engine, account_id: int, when: datetime) -> dict[str, int]:
    with engine.connect() as conn:
        return {c.customer_id: c.mrr for c in mrr_at(conn, account_id, when)}


@pytest.mark.parametrize("proration_invoice", ["paid", "draft"])
def test_upgrade_mid_period_counts_the_new_plan_from_the_proration(
    engine: Engine, proration_invoice: str
) -> None:
    """Pro 100.00 -> Business 200.00 on 2026-03-15: the proration pair does not count; the current item does,
    from the proration's start, whether the prorations were invoiced at once or wait on a draft."""
    pro, biz = b.price("price_pro", "prod_pro", 10000), b.price("price_biz", "prod_biz", 20000)
    objs: list[dict] = [
        b.product("prod_pro", "Pro"),
        b.product("prod_biz", "Business"),
        pro,
        biz,
        b.customer("cus_u", "Upgrader"),
    ]
    full = b.line(
        "il_m",
        "in_m",
        10000,
        (T(2026, 3), T(2026, 4)),
        price_obj=pro,
        subscription="sub_u",
        subscription_item="si_u",
    )
    objs.append(b.invoice("in_m", "cus_u", [full], created=T(2026, 3), subscription="sub_u"))
    unused = b.line(
        "il_unused",
        "in_p",
        -5484,
        (T(2026, 3, 15), T(2026, 4)),
        price_obj=pro,
        subscription="sub_u",
        subscription_item="si_u",
        proration=True,
    )
    remaining = b.line(
        "il_rem",
        "in_p",
        10968,
        (T(2026, 3, 15), T(2026, 4)),
        price_obj=biz,
        subscription="sub_u",
        subscription_item="si_u",
        proration=True,
    )
    objs.append(
        b.invoice(
            "in_p",
            "cus_u",
            [unused, remaining],
            status=proration_invoice,
            created=T(2026, 3, 15),
            subscription="sub_u",
        )
    )
    objs.append(
        b.subscription(
            "sub_u", "cus_u", [b.subscription_item("si_u", "sub_u", biz, period=(T(2026, 3), T(2026, 4)))]
        )
    )
    account = make_account(engine)
    store(engine, account, objs)
    result = rebuild_account(engine, account, today=date(2026, 3, 20))
    assert result.by_class["proration"] == 2
    assert _mrr(engine, account.id or 0, at(2026, 3, 10)) == {"cus_u": 10000}
    assert _mrr(engine, account.id or 0, at(2026, 3, 15)) == {"cus_u": 20000}
    with engine.connect() as conn:
        assert [c.plan for c in mrr_at(conn, account.id or 0, at(2026, 3, 20))] == ["Business"]


def test_trial_past_due_and_metered(engine: Engine) -> None:
    base = b.price("price_base", "prod_base", 10000)
    usage = b.price("price_use", "prod_use", None, usage_type="metered", meter="mtr_1")
    objs: list[dict] = [
        b.product("prod_base", "Base"),
        b.product("prod_use", "API"),
        base,
        usage,
        b.customer("cus_t", "Trial"),
        b.customer("cus_p", "Late"),
        b.customer("cus_m", "Meter"),
    ]
    # Trial: a 0.00 invoice for the trial period and a trialing subscription: MRR 0, not a paying customer.
    trial = b.line(
        "il_t",
        "in_t",
        0,
        (T(2026, 3), T(2026, 3, 15)),
        price_obj=base,
        subscription="sub_t",
        subscription_item="si_t",
    )
    objs.append(b.invoice("in_t", "cus_t", [trial], created=T(2026, 3), subscription="sub_t"))
    objs.append(
        b.subscription(
            "sub_t",
            "cus_t",
            [b.subscription_item("si_t", "sub_t", base, period=(T(2026, 3), T(2026, 3, 15)))],
            status="trialing",
            trial_end=T(2026, 3, 15),
        )
    )
    # Past due: the March invoice is open and unpaid; it still counts until the subscription is canceled.
    late = b.line(
        "il_p",
        "in_p",
        10000,
        (T(2026, 3), T(2026, 4)),
        price_obj=base,
        subscription="sub_p",
        subscription_item="si_p",
    )
    objs.append(b.invoice("in_p", "cus_p", [late], status="open", created=T(2026, 3), subscription="sub_p"))
    objs.append(
        b.subscription(
            "sub_p",
            "cus_p",
            [b.subscription_item("si_p", "sub_p", base, period=(T(2026, 3), T(2026, 4)))],
            status="past_due",
        )
    )
    # Metered in arrears: usage for January is billed on Feb 1 (30.00), for February on Mar 1 (40.00).
    for month, used in ((1, 3000), (2, 4000)):
        u = b.line(
            f"il_u{month}",
            f"in_u{month}",
            used,
            (T(2026, month), T(2026, month + 1)),
            price_obj=usage,
            subscription="sub_m",
            subscription_item="si_use",
        )
        lic = b.line(
            f"il_b{month}",
            f"in_u{month}",
            10000,
            (T(2026, month + 1), T(2026, month + 2)),
            price_obj=base,
            subscription="sub_m",
            subscription_item="si_base",
        )
        objs.append(
            b.invoice(f"in_u{month}", "cus_m", [u, lic], created=T(2026, month + 1), subscription="sub_m")
        )
    objs.append(
        b.subscription(
            "sub_m",
            "cus_m",
            [
                b.subscription_item("si_base", "sub_m", base, period=(T(2026, 3), T(2026, 4))),
                b.subscription_item("si_use", "sub_m", usage, quantity=None, period=(T(2026, 3), T(2026, 4))),
            ],
        )
    )
    account = make_account(engine)
    store(engine, account, objs)
    rebuild_account(engine, account, today=date(2026, 3, 20))
    aid = account.id or 0
    # Jan 15: only January usage (billed later, restated). Feb 15: base 100.00 + February usage 40.00.
    assert _mrr(engine, aid, at(2026, 1, 15)) == {"cus_m": 3000}
    assert _mrr(engine, aid, at(2026, 2, 15))["cus_m"] == 14000
    # Mar 20: March usage not billed yet, carried forward at February's 40.00; the past-due customer counts.
    assert _mrr(engine, aid, at(2026, 3, 20)) == {"cus_m": 14000, "cus_p": 10000}


def test_metered_carry_forward_stops_when_the_subscription_ends(engine: Engine) -> None:
    usage = b.price("price_use", "prod_use", None, usage_type="metered", meter="mtr_1")
    u = b.line(
        "il_u",
        "in_u",
        4000,
        (T(2026, 2), T(2026, 3)),
        price_obj=usage,
        subscription="sub_m",
        subscription_item="si_use",
    )
    objs = [
        b.product("prod_use", "API"),
        usage,
        b.customer("cus_m", "Meter"),
        b.invoice("in_u", "cus_m", [u], created=T(2026, 3), subscription="sub_m"),
        b.subscription(
            "sub_m",
            "cus_m",
            [b.subscription_item("si_use", "sub_m", usage, quantity=None, period=(T(2026, 3), T(2026, 4)))],
            status="canceled",
            ended_at=T(2026, 3),
            canceled_at=T(2026, 3),
        ),
    ]
    account = make_account(engine)
    store(engine, account, objs)
    rebuild_account(engine, account, today=date(2026, 3, 20))
    assert _mrr(engine, account.id or 0, at(2026, 2, 15)) == {"cus_m": 4000}
    assert _mrr(engine, account.id or 0, at(2026, 3, 20)) == {}


def test_missing_rate_is_left_out_with_a_warning_then_converted(engine: Engine) -> None:
    account = make_account(engine)
    store(
        engine, account, priced_world("kes", (T(2026, 3), T(2026, 4)), amount=1_000_000)
    )  # the ECB has no KES
    result = rebuild_account(engine, account, today=date(2026, 3, 20))
    assert result.excluded == {"missing_rate": 1}
    assert _mrr(engine, account.id or 0, at(2026, 3, 10)) == {}
    with engine.connect() as conn:
        (warning,) = missing_rate_warnings(conn, account.id or 0, at=at(2026, 3, 10))
    assert warning["code"] == "missing_rate"
    assert "KES" in warning["message"] and "2026-03-01 to 2026-04-01" in warning["message"]
    assert "10,000.00 KES of MRR" in warning["message"]
    import_rates(engine, "date,currency,rate\n2026-01-01,kes,0.0075\n2026-03-15,kes,0.008\n", "usd")
    rebuild_account(engine, account, today=date(2026, 3, 20))
    # 10,000.00 KES x 0.0075 (the rate on the period start, not the later one) = 75.00 USD
    assert _mrr(engine, account.id or 0, at(2026, 3, 10)) == {"cus_e": 7500}


def test_ledger_is_stale_after_a_newer_sync(engine: Engine) -> None:
    account = make_account(engine)
    assert not ledger_is_stale(engine, account)  # nothing stored: nothing to build
    store(engine, account, monthly_world())
    assert ledger_is_stale(engine, account)  # lines, never built
    assert ensure_ledger(engine, account, today=date(2026, 3, 20)) is not None
    assert not ledger_is_stale(engine, account)
    assert ensure_ledger(engine, account) is None
    with Session(engine) as s:
        s.add(SyncState(account_id=account.id or 0, last_sync_at=T(2026, 3, 21), last_sync_ok=True))
        s.commit()
    assert ledger_is_stale(engine, account)  # a sync ran after the build
    rebuild_account(engine, account, today=date(2026, 3, 21))
    assert not ledger_is_stale(engine, account)


def test_a_ledger_built_by_older_rules_is_stale_and_rebuilt_whole(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New build rules (LEDGER_FORMAT) make the stored ledger stale without a sync, and the next rebuild
    full: the columns an upgrade adds (migration 0010 leaves quantity NULL) are written before a command
    reads them."""
    account = make_account(engine)
    store(engine, account, monthly_world())
    rebuild_account(engine, account, today=date(2026, 3, 20))
    lines = table_of(ClassifiedLine)
    read = select(lines.c.line_id, lines.c.quantity, lines.c.discount_total).order_by(lines.c.line_id)
    with engine.begin() as conn:
        built = conn.execute(read).all()
        conn.execute(update(lines).values(quantity=None, discount_total=0))  # what the migration leaves
    assert {quantity for _, quantity, _ in built} == {1}
    assert not ledger_is_stale(engine, account)
    monkeypatch.setattr(rebuild, "LEDGER_FORMAT", rebuild.LEDGER_FORMAT + 1)
    assert ledger_is_stale(engine, account)
    result = ensure_ledger(engine, account, today=date(2026, 3, 20))
    assert result is not None and result.mode == "full"
    with engine.connect() as conn:
        assert conn.execute(read).all() == built
    assert not ledger_is_stale(engine, account)


def test_what_stripe_no_longer_lists_leaves_the_figures_from_then_on(engine: Engine) -> None:
    """A subscription no longer listed and a deleted customer (whose subscription Stripe still lists as
    active here) stop counting once a full sync finds them gone; their past MRR stays."""
    day = 86400
    now = int(time.time())
    world = build_world(customers=8, months=6, start=now - 5 * 30 * day - 5 * day)
    with FakeStripe(world) as server:
        account = add_account(engine, server.url)
        reader = StripeReader(StripeConfig(api_key=KEY, api_base=server.url, rps=0))
        Syncer(engine, account.id or 0, reader).run(full=True)
        rebuild_account(engine, account)
        past = datetime.fromtimestamp(now - 60 * day, UTC)
        with engine.connect() as conn:
            before_now = {c.customer_id: c.mrr for c in mrr_at(conn, account.id or 0, datetime.now(UTC))}
            before_past = {c.customer_id: c.mrr for c in mrr_at(conn, account.id or 0, past)}
        assert before_now["cus_00002"] > 0 and before_now["cus_00004"] > 0
        world.remove("subscription", "sub_00002")
        gone = world.get("customer", "cus_00004")
        assert gone is not None
        world.collections["customer"].put({**gone, "deleted": True})  # not listed any more
        outcome = Syncer(engine, account.id or 0, reader).run(full=True)
        assert outcome.deleted == {"customers": 1, "subscriptions": 1}
    rebuild_account(engine, account)
    with engine.connect() as conn:
        after_now = {c.customer_id: c.mrr for c in mrr_at(conn, account.id or 0, datetime.now(UTC))}
        after_past = {c.customer_id: c.mrr for c in mrr_at(conn, account.id or 0, past)}
    expected = {c: m for c, m in before_now.items() if c not in ("cus_00002", "cus_00004")}
    assert after_now == expected
    assert after_past == before_past  # history is kept


def test_rebuilds_on_postgresql_refresh_the_planner_statistics(pg_engine: Engine) -> None:
    """A first night's tables are new, and a new day lies past the snapshots' histogram: without fresh
    statistics the metrics' plans join two snapshot days row by row. A full rebuild analyzes every table; an
    incremental one that adds a day, the snapshots; one that adds nothing, nothing."""

    def analyzed() -> dict[str, object]:
        with pg_engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT relname, last_analyze FROM pg_stat_user_tables "
                    "WHERE relname IN ('ledger_line', 'mrr_snapshot')"
                )
            )
            return {name: at_ for name, at_ in rows}

    account = make_account(pg_engine)
    store(pg_engine, account, monthly_world())
    before = analyzed()
    rebuild_account(pg_engine, account, today=date(2026, 3, 20), full=True)
    full = analyzed()
    assert set(full) == {"ledger_line", "mrr_snapshot"}
    assert all(full[t] is not None and full[t] != before.get(t) for t in full)
    rebuild_account(pg_engine, account, today=date(2026, 3, 20))
    assert analyzed() == full  # the same day again: nothing new to plan for
    rebuild_account(pg_engine, account, today=date(2026, 3, 21))
    next_day = analyzed()
    assert next_day["mrr_snapshot"] != full["mrr_snapshot"] and next_day["ledger_line"] == full["ledger_line"]
