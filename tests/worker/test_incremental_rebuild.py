"""The incremental rebuild gives exactly what a rebuild from scratch gives.

Two accounts sync the same local Stripe server night after night while random changes land in it (new
customers, voided and paid invoices, seat changes, cancellations, deletions, a product renamed); one account
is rebuilt incrementally (the default), the other from scratch (`full`). Every ledger row, snapshot, metric,
at-risk flag, Slack digest and backtest figure of the two must be equal, on SQLite and PostgreSQL; the
incremental account's stored at-risk verdicts and backtest spans, kept from night to night and read at
later instants too, must equal a judgement from scratch. So must its report's figures (metrics, trend,
cohort grid), read back from a metric run stored the night before and the derived figures kept since
earlier nights, equal the scratch account's computed afresh; the last night changes nothing, so the
incremental account's report reads every figure back, while after any other night it must not.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from integrations.stripe.client import RetryPolicy, StripeConfig, StripeReader
from integrations.stripe.sync import Syncer
from metrics.at_risk import RiskAssessment
from metrics.calendar import moment_ts
from metrics.ledger import ClassifiedLine, MrrSnapshot, SnapshotDay
from metrics.tables import table_of
from tests.support.stripe_world import DAY, KEY, add_account, build_world
from worker import derived_store
from worker.alerts import run_alerts
from worker.backtest import compute_backtest
from worker.demo import builders as b
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.ledger import read
from worker.metrics_run import compute_metrics, current_metrics
from worker.models import Account
from worker.rebuild import rebuild_account
from worker.report.loader import load_report
from worker.risk import at_risk, customers_paying_between, evaluate_customers, present_assessments
from worker.settings import get_settings

FAST = RetryPolicy(attempts=4, base=0.001, max_wait=0.01)
NIGHTS = 5  # the last one quiet: nothing changes in Stripe


class Changes:
    """Random changes to a world, each announced by the event Stripe would send (at the real time: the
    incremental sync asks for events since its last run)."""

    def __init__(self, world: StripeWorld, seed: int) -> None:
        self.world = world
        self.rng = random.Random(seed)
        self.events = 0
        self.added = 0

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        self.events += 1
        self.world.add(b.event(f"evt_{self.events:04d}", kind, obj, int(time.time())))

    def _pick(self, kind: str, keep: Any = lambda o: True) -> dict[str, Any] | None:
        found = sorted(
            (o for o in self.world.collections[kind].by_id.values() if not o.get("deleted") and keep(o)),
            key=lambda o: o["id"],
        )
        return self.rng.choice(found) if found else None

    def new_customer(self) -> None:
        now = int(time.time())
        self.added += 1
        cid, sub_id, inv_id = f"cus_n{self.added:03d}", f"sub_n{self.added:03d}", f"in_n{self.added:03d}"
        price = self.world.get("price", f"price_{self.added % 3}")
        assert price is not None
        period = (now - 3 * DAY, now + 27 * DAY)
        item = b.subscription_item(f"si_n{self.added:03d}", sub_id, price, quantity=2, period=period)
        customer = self.world.add(b.customer(cid, f"New {self.added}", created=now - 3 * DAY))
        sub = self.world.add(b.subscription(sub_id, cid, [item], created=now - 3 * DAY))
        line = b.line(
            f"il_n{self.added:03d}",
            inv_id,
            2 * price["unit_amount"],
            period,
            price_obj=price,
            subscription=sub_id,
            subscription_item=item["id"],
            quantity=2,
        )
        inv = self.world.add(
            b.invoice(inv_id, cid, [line], created=now - 3 * DAY, subscription=sub_id, period=period)
        )
        self._event("customer.created", customer)
        self._event("customer.subscription.created", sub)
        self._event("invoice.paid", inv)

    def void_invoice(self) -> None:
        inv = self._pick("invoice", lambda o: o["status"] == "paid")
        if inv is not None:
            self._event("invoice.voided", self.world.add({**inv, "status": "void"}))

    def fail_payment(self) -> None:
        """A paid invoice, maybe months old, is found unpaid after two attempts: a signal in the past too."""
        inv = self._pick("invoice", lambda o: o["status"] == "paid")
        if inv is not None:
            failed = {**inv, "status": "open", "attempt_count": 2, "paid": False}
            self._event("invoice.payment_failed", self.world.add(failed))

    def pay_draft(self) -> None:
        inv = self._pick("invoice", lambda o: o["status"] == "draft")
        if inv is not None:
            self._event("invoice.paid", self.world.add({**inv, "status": "paid"}))

    def change_seats(self) -> None:
        sub = self._pick("subscription", lambda o: o["status"] == "active")
        if sub is not None:
            items = [
                {**i, "quantity": (i["quantity"] or 1) + self.rng.choice([-1, 1, 2])}
                for i in sub["items"]["data"]
            ]
            items = [{**i, "quantity": max(1, i["quantity"])} for i in items]
            new = {**sub, "items": {**sub["items"], "data": items}}
            self._event("customer.subscription.updated", self.world.add(new))

    def cancel(self) -> None:
        sub = self._pick("subscription", lambda o: o["status"] == "active")
        if sub is not None:
            now = int(time.time()) - self.rng.randrange(1, 40) * DAY
            new = {**sub, "status": "canceled", "canceled_at": now, "ended_at": now}
            self._event("customer.subscription.deleted", self.world.add(new))

    def schedule_cancel(self) -> None:
        sub = self._pick("subscription", lambda o: o["status"] == "active" and not o["cancel_at_period_end"])
        if sub is not None:
            end = sub["items"]["data"][0]["current_period_end"]
            new = {**sub, "cancel_at_period_end": True, "cancel_at": end}
            self._event("customer.subscription.updated", self.world.add(new))

    def delete_customer(self) -> None:
        customer = self._pick("customer")
        if customer is not None:
            self.world.delete_customer(customer["id"])
            self._event("customer.deleted", {"id": customer["id"], "object": "customer"})

    def rename_product(self) -> None:
        product = self.world.get("product", "prod_basic")
        assert product is not None
        renamed = self.world.add({**product, "name": f"Basic {self.events}"})
        self._event("product.updated", renamed)

    def night(self) -> None:
        actions = [
            self.new_customer,
            self.void_invoice,
            self.pay_draft,
            self.change_seats,
            self.cancel,
            self.delete_customer,
            self.rename_product,
        ]
        # one at-risk signal now and one in the backtest's past at least
        for action in [self.schedule_cancel, self.fail_payment, *self.rng.choices(actions, k=6)]:
            action()


def _sync(engine: Engine, account: Account, server: FakeStripe) -> None:
    reader = StripeReader(StripeConfig(api_key=KEY, api_base=server.url, rps=0), retry=FAST)
    Syncer(engine, account.id or 0, reader, workers=2).run()


def _tables(engine: Engine, account_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every ledger, snapshot and snapshot-day row of the account without its id, sorted."""
    out = {}
    with engine.connect() as conn:
        for model in (ClassifiedLine, MrrSnapshot, SnapshotDay):
            table = table_of(model)
            columns = [c for c in table.c if c.name != "account_id"]
            rows = conn.execute(select(*columns).where(table.c.account_id == account_id)).all()
            out[table.name] = sorted(tuple(r) for r in rows)
    return out


def from_scratch(engine: Engine, account: Account, as_of: datetime) -> list[RiskAssessment]:
    """Every paying customer judged at `as_of`, nothing stored read back."""
    at = moment_ts(as_of)
    return evaluate_customers(engine, account, customers_paying_between(engine, account, at, at), as_of)


def _digest(engine: Engine, account: Account) -> tuple[int, int, str]:
    """The Slack digest a night would post (dry run), the account's name left out."""
    result = run_alerts(engine, get_settings(), account, datetime.now(UTC), dry_run=True, pause=0)
    return result.at_risk, result.mrr_at_risk, json.dumps(result.payloads).replace(account.name, "ACCOUNT")


def _metrics(engine: Engine, account: Account, as_of: datetime, store: bool = False) -> dict[str, Any]:
    payload = compute_metrics(engine, account, as_of, store=store)
    payload.pop("account", None)
    return payload


def _report(engine: Engine, account: Account, as_of: datetime, reuse: bool) -> dict[str, Any]:
    """The figures of the report that come from the ledger (at-risk and backtest are compared above)."""
    data = load_report(engine, account, as_of, reuse=reuse)
    metrics = {k: v for k, v in data.metrics.items() if k != "account"}
    return {"metrics": metrics, "trend": data.trend, "cohorts": data.cohorts}


def _kept_trend_days(engine: Engine, account: Account) -> list[str]:
    """The days of the trend points stored at the account's current epoch."""
    with engine.connect() as conn:
        _, found = derived_store.figures(conn, account.id or 0, derived_store.TREND)
    return sorted(key.rsplit(":", 1)[1] for key in found)


@pytest.fixture
def world() -> StripeWorld:
    # months up to now, so that current periods, upcoming lines and the nights' changes overlap
    return build_world(customers=24, months=17, start=int(time.time()) - 17 * 30 * DAY + 3 * DAY)


@pytest.fixture
def server(world: StripeWorld) -> Iterator[FakeStripe]:
    with FakeStripe(world) as fake:
        yield fake


@pytest.mark.parametrize(("seed", "batch"), [(1, None), (2, 5)])
def test_incremental_rebuilds_equal_rebuilds_from_scratch_night_after_night(
    engine: Engine,
    server: FakeStripe,
    world: StripeWorld,
    seed: int,
    batch: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if batch is not None:  # customers read, built and written a few at a time, as a large account's are
        monkeypatch.setattr(read, "BATCH_CUSTOMERS", batch)
    incremental = add_account(engine, server.url, name="incremental")
    scratch = add_account(engine, server.url, name="scratch")
    changes = Changes(world, seed)
    # nights that cross a month start, so snapshot days are added and dropped
    first = (datetime.now(UTC).date().replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=2)
    modes, flagged, backtest_flags = [], 0, 0
    for night in range(NIGHTS):
        quiet = night == NIGHTS - 1
        if night and not quiet:
            changes.night()
        today = first + timedelta(days=night)
        for account in (incremental, scratch):
            _sync(engine, account, server)
        modes.append(rebuild_account(engine, incremental, today).mode)
        assert rebuild_account(engine, scratch, today, full=True).mode == "full"
        assert _tables(engine, incremental.id or 0) == _tables(engine, scratch.id or 0), f"night {night}"
        as_of = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
        assert _metrics(engine, incremental, as_of) == _metrics(engine, scratch, as_of, store=True), (
            f"night {night}"
        )
        now = datetime.now(UTC)  # the signals judge the stored state at the last sync
        flags = at_risk(engine, incremental, now)
        assert flags == at_risk(engine, scratch, now), f"night {night}"
        flagged += len(flags["accounts"])
        for later in (0, 1, 9):  # stored verdicts (kept since earlier nights) equal a judgement from scratch
            when = now + timedelta(days=later, hours=night)
            assert present_assessments(engine, incremental, when) == from_scratch(engine, incremental, when)
        assert _digest(engine, incremental) == _digest(engine, scratch), f"night {night}"
        backtest_as_of = now + timedelta(days=night)  # its points move by a day each night
        kept = compute_backtest(engine, incremental, backtest_as_of, reuse=True)
        assert kept == compute_backtest(engine, scratch, backtest_as_of), f"night {night}"
        assert kept == compute_backtest(engine, incremental, backtest_as_of), f"night {night}"
        backtest_flags += kept.flags
        # the run of tonight's day stored last night, before tonight's changes: current only when none came
        assert (current_metrics(engine, incremental, as_of) is not None) == quiet, f"night {night}"
        if quiet:  # the trend's month starts were kept last night, under the epoch that still holds
            assert len(_kept_trend_days(engine, incremental)) >= 12, f"night {night}"
        report = _report(engine, incremental, as_of, reuse=True)
        assert report == _report(engine, scratch, as_of, reuse=False), f"night {night}"
        assert sum(p["nrr"] is not None for p in report["trend"]) >= 3, f"night {night}"  # real figures
        assert report["cohorts"]["cohorts"], f"night {night}"
        # tomorrow's run, computed tonight (as `retention metrics --as-of` would): the next report may take it
        compute_metrics(engine, incremental, as_of + timedelta(days=1), store=True)
    assert modes == ["full"] + ["incremental"] * (NIGHTS - 1)  # the first night follows a full sync
    assert flagged > 0 and backtest_flags > 0  # the at-risk lists and backtests compared were not all empty


def test_a_night_without_changes_recomputes_no_customer(engine: Engine, server: FakeStripe) -> None:
    account = add_account(engine, server.url)
    _sync(engine, account, server)
    today = date(2030, 1, 15)
    rebuild_account(engine, account, today)
    before = _tables(engine, account.id or 0)
    _sync(engine, account, server)
    result = rebuild_account(engine, account, today + timedelta(days=1))
    assert (result.mode, result.customers, result.lines) == ("incremental", 0, 0)
    after = _tables(engine, account.id or 0)
    assert after["ledger_line"] == before["ledger_line"]
    days = [r[0] for r in after["mrr_snapshot_day"]]
    assert date(2030, 1, 16) in days and date(2030, 1, 15) not in days  # today moved on; yesterday dropped
    # where today's metrics windows start, a month and a year back, come with today (the metrics read them)
    assert {date(2029, 12, 16), date(2029, 1, 16)} <= set(days) and date(2029, 12, 15) not in days
