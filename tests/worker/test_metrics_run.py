"""compute_metrics over stored snapshots: the payload's shape, stored runs and history, and the command."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from metrics.calendar import day_ts, next_month_start
from metrics.ledger import ClassifiedLine, MrrSnapshot, SnapshotDay
from metrics.runs import MetricRun
from metrics.tables import table_of
from tests.support.stripe_rows import store
from worker import metrics_run
from worker.cli.common import open_db
from worker.cli.main import app
from worker.demo.sample import build_sample_world
from worker.metrics_run import compute_metrics, metric_history
from worker.models import Account
from worker.rebuild import rebuild_account

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
T12, T1, T0M = date(2025, 6, 1), date(2026, 6, 1), date(2026, 5, 1)
W_KEYS = {
    "start",
    "expansion",
    "contraction",
    "churn",
    "end",
    "nrr",
    "grr",
    "logo_retention",
    "customers",
    "retained",
    "nrr_including_one_time",
    "warnings",
}


def make_account(engine: Engine, name: str = "acme") -> Account:
    with Session(engine, expire_on_commit=False) as session:
        account = Account(name=name, key_encrypted="x", reporting_currency="usd")
        session.add(account)
        session.commit()
        session.refresh(account)
        return account


def _lines_of(account: Account, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A counted recurring line over the month from each snapshot's day, paying its MRR, on its plan."""
    lines = []
    for r in rows:
        start = day_ts(r["day"])
        end = day_ts(next_month_start(r["day"]))
        lines.append(
            {
                "account_id": account.id,
                "line_id": f"il_{r['customer_id']}_{r['day']:%Y%m}",
                "invoice_id": "in_1",
                "customer_id": r["customer_id"],
                "klass": "recurring",
                "reason": "r",
                "period_start": start,
                "period_end": end,
                "mrr_end": end,
                "currency": "usd",
                "net_amount": r["mrr"],
                "monthly_amount": r["mrr"],
                "monthly_reporting": r["mrr"],
                "product_id": r["plan"],
            }
        )
    return lines


def seed(engine: Engine, account: Account) -> None:
    """40 customers on Pro at $500 a month a year ago: 4 churn, 36 stay, one of them doubles.

    T12M: start $20,000, expansion $500, churn $2,000, end $18,500 -> NRR 92.5%, GRR 90%, logos 90%.
    Monthly: 37 pay in May ($18,500); in June one more churns ($500) and one doubles (+$500) -> NRR 100%.
    A new customer paying $9,000 in June is in neither cohort.
    """
    rows: list[dict[str, Any]] = []
    for i in range(40):
        cid = f"cus_{i:02d}"
        rows.append({"customer_id": cid, "day": T12, "mrr": 50_000, "plan": "Pro"})
        may = 0 if i < 3 else 50_000
        june = 0 if i < 4 else (100_000 if i == 39 else 50_000)
        if may:
            rows.append({"customer_id": cid, "day": T0M, "mrr": may, "plan": "Pro"})
        if june:
            rows.append(
                {
                    "customer_id": cid,
                    "day": T1,
                    "mrr": june,
                    "plan": "Pro",
                    "one_time": 20_000 if i == 5 else 0,
                }
            )
    rows.append({"customer_id": "cus_new", "day": T1, "mrr": 900_000, "plan": "Enterprise"})  # after t0
    with engine.begin() as conn:
        conn.execute(
            insert(table_of(MrrSnapshot)),
            [{"account_id": account.id, "one_time": 0, **r} for r in rows],
        )
        # the ledger lines those snapshots come from (the signup month is read from them): a month each
        conn.execute(insert(table_of(ClassifiedLine)), _lines_of(account, rows))
        # the days are computed: ensure_snapshots must keep these rows
        conn.execute(
            insert(table_of(SnapshotDay)),
            [{"account_id": account.id, "day": d} for d in (T12, T0M, T1)],
        )


def test_payload_shape_and_figures(engine: Engine) -> None:
    account = make_account(engine)
    seed(engine, account)
    out = compute_metrics(engine, account, AS_OF, store=False)
    assert set(out) == {
        "as_of",
        "currency",
        "mrr",
        "t12m",
        "monthly",
        "segments",
        "movements",
        "warnings",
        "summary",
    }
    assert (out["as_of"], out["currency"], out["mrr"]) == ("2026-06-01", "usd", 9000 + 36 * 500 + 500)
    assert set(out["t12m"]) == W_KEYS and set(out["monthly"]) == W_KEYS | {"nrr_annualized"}
    t12m = out["t12m"]
    assert (t12m["start"], t12m["expansion"], t12m["churn"], t12m["contraction"], t12m["end"]) == (
        20_000.0,
        500.0,
        2_000.0,
        0.0,
        18_500.0,
    )
    assert (t12m["nrr"], t12m["grr"], t12m["logo_retention"], t12m["customers"], t12m["retained"]) == (
        0.925,
        0.9,
        0.9,
        40,
        36,
    )
    assert t12m["nrr_including_one_time"] == round((18_500 + 200) / 20_000, 4)
    monthly = out["monthly"]
    # May: 37 customers at $500 = $18,500; June: one more churns, one doubles
    assert (monthly["start"], monthly["churn"], monthly["expansion"], monthly["customers"]) == (
        18_500.0,
        500.0,
        500.0,
        37,
    )
    assert monthly["nrr"] == 1.0 and monthly["nrr_annualized"] == 1.0
    # the new Enterprise customer is in no cohort; the segment's warning names the segment
    pro = out["segments"]["plan"]["Pro"]
    assert list(out["segments"]["plan"]) == ["Pro"]
    figures = {k: v for k, v in t12m.items() if k != "warnings"}
    assert {k: v for k, v in pro.items() if k != "warnings"} == figures
    assert [w["message"].split(":")[0] for w in pro["warnings"]] == ["plan Pro (T12M)"]
    assert list(out["segments"]["size"]) == ["100-1k"]
    assert list(out["segments"]["cohort"]) == ["2025-06"]
    # one customer is all of the expansion, in both headline windows
    assert [(w["code"], w["message"].split(":")[0]) for w in out["warnings"]] == [
        ("expansion_concentration", "T12M"),
        ("expansion_concentration", "monthly"),
    ]
    assert out["summary"]["sentence"].startswith("NRR 92.5% is pulled down by churn ($2,000)")
    months = [m["month"] for m in out["movements"]]
    assert months == [
        f"{y}-{m:02d}"
        for y, m in [(2025, 6), *[(2025, k) for k in range(7, 13)], *[(2026, k) for k in range(1, 7)]]
    ]
    june = out["movements"][-1]
    assert (june["churn"], june["expansion"], june["new"], june["mrr"]) == (-500.0, 500.0, 9000.0, 27_500.0)
    json.dumps(out)  # plain JSON all the way down


def test_missing_rate_warnings_pass_through(engine: Engine) -> None:
    account = make_account(engine)
    seed(engine, account)
    start = int(datetime(2026, 5, 20, tzinfo=UTC).timestamp())
    with engine.begin() as conn:
        conn.execute(
            insert(table_of(ClassifiedLine)).values(
                account_id=account.id,
                line_id="il_eur",
                invoice_id="in_eur",
                customer_id="cus_eur",
                klass="recurring",
                reason="r",
                counted=False,
                excluded_reason="missing_rate",
                period_start=start,
                period_end=start + 30 * 86400,
                mrr_end=start + 30 * 86400,
                currency="eur",
                net_amount=12_000,
                monthly_amount=12_000,
            )
        )
    out = compute_metrics(engine, account, AS_OF, store=False)
    warning = out["warnings"][-1]
    assert warning["code"] == "missing_rate"
    assert "EUR" in warning["message"] and "120.00" in warning["message"]


def test_runs_are_stored_with_the_definitions_version(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = make_account(engine)
    seed(engine, account)
    compute_metrics(engine, account, AS_OF)
    compute_metrics(engine, account, AS_OF)  # the same night twice: one run
    with Session(engine) as session:
        assert len(session.exec(select(MetricRun)).all()) == 1  # type: ignore[call-overload]
    monkeypatch.setattr(metrics_run, "DEFINITIONS_VERSION", "metrics-next")
    compute_metrics(engine, account, AS_OF)
    compute_metrics(engine, account, datetime(2026, 5, 1, tzinfo=UTC))
    history = metric_history(engine, account)
    assert [(h["as_of"], h["definitions_version"]) for h in history] == [
        ("2026-05-01", "metrics-next"),
        ("2026-06-01", "metrics-2026.12"),
        ("2026-06-01", "metrics-next"),
    ]
    assert history[1]["t12m"]["nrr"] == 0.925 and history[1]["mrr"] == 27_500.0


def test_metrics_command_json_and_table(cli: CliRunner) -> None:
    engine = open_db()
    account = make_account(engine)
    seed(engine, account)
    result = cli.invoke(app, ["metrics", "--as-of", "2026-06-01", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["t12m"]["nrr"] == 0.925
    table = cli.invoke(app, ["metrics", "acme", "--as-of", "2026-06-01"])
    assert table.exit_code == 0, table.output
    assert "92.5%" in table.stdout and "annualized" in table.stdout and "2025-06" in table.stdout
    refused = cli.invoke(app, ["metrics", "nobody"])
    assert refused.exit_code == 2
    bad = cli.invoke(app, ["metrics", "--size-bands", "9,1"])
    assert bad.exit_code == 2


def test_the_reports_trend_ratios_are_the_metrics_t12m_ratios(engine: Engine) -> None:
    world = build_sample_world(seed=5, customers=60, months=18, end=date(2026, 6, 1))
    objs = [
        o
        for kind in ("customer", "product", "price", "subscription")
        for o in world.collections[kind].by_id.values()
    ]
    objs += [
        {**o, "lines": {**o["lines"], "data": world.invoice_lines[i]}}
        for i, o in world.collections["invoice"].by_id.items()
    ]
    account = make_account(engine)
    store(engine, account, objs)
    rebuild_account(engine, account, date(2026, 6, 10))
    seen = set()
    for day in (date(2026, 3, 1), date(2026, 6, 10)):
        payload = compute_metrics(
            engine, account, datetime(day.year, day.month, day.day, tzinfo=UTC), store=False
        )
        expected = {k: payload["t12m"][k] for k in ("nrr", "grr", "logo_retention")}
        assert metrics_run.t12m_ratios(engine, account, day) == expected
        seen.add(expected["nrr"])
    assert len(seen) == 2 and None not in seen  # two different, real figures compared
