"""`retention mrr / movements / explain / rates import / rebuild` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from metrics.ledger import FxRate
from metrics.tables import table_of
from tests.support.rebuild_worlds import T, euro_world, monthly_world, priced_world
from tests.support.stripe_rows import make_account, store
from worker.cli.main import app
from worker.db import ensure_schema
from worker.settings import get_settings


def _engine() -> Engine:
    return ensure_schema(get_settings().database_url)


def _run(cli: CliRunner, *args: str) -> dict:
    result = cli.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_mrr_json_per_customer(cli: CliRunner) -> None:
    engine = _engine()
    store(engine, make_account(engine), monthly_world())
    out = _run(cli, "mrr", "acme", "--as-of", "2026-01-15", "--json")
    assert out == {
        "as_of": "2026-01-15T00:00:00+00:00",
        "currency": "usd",
        "mrr": 200.0,
        "customers": [
            {"id": "cus_a", "name": "Alpha", "mrr": 100.0, "plan": "Pro"},
            {"id": "cus_b", "name": "Beta", "mrr": 100.0, "plan": "Pro"},
        ],
    }
    later = _run(cli, "mrr", "--as-of", "2026-03-15", "--json")  # the only account when NAME is left out
    assert later["mrr"] == 100.0 and [c["id"] for c in later["customers"]] == ["cus_a"]
    text = cli.invoke(app, ["mrr", "--as-of", "2026-01-15"])
    assert text.exit_code == 0 and "Alpha" in text.stdout and "$100.00" in text.stdout


def test_movements_json(cli: CliRunner) -> None:
    engine = _engine()
    store(engine, make_account(engine), monthly_world())
    out = _run(cli, "movements", "--json")
    months = {m["month"]: m for m in out["months"]}
    assert out["currency"] == "usd"
    assert months["2026-01"] == {
        "month": "2026-01",
        "new": 200.0,
        "expansion": 0.0,
        "contraction": 0.0,
        "churn": 0.0,
        "reactivation": 0.0,
        "mrr": 200.0,
    }
    assert months["2026-03"]["mrr"] == 200.0  # Beta cancels on March 10, after the month start
    # April 1: Beta has ended, Alpha's last invoiced period ended March 31 with no newer one: both churn.
    assert months["2026-04"]["churn"] == -200.0 and months["2026-04"]["mrr"] == 0.0
    total = 0.0
    for m in out["months"]:
        total += m["new"] + m["expansion"] + m["contraction"] + m["churn"] + m["reactivation"]
        assert round(total, 2) == m["mrr"]


def test_explain_lists_counted_and_left_out_lines(cli: CliRunner) -> None:
    engine = _engine()
    store(engine, make_account(engine), monthly_world())
    jan = _run(cli, "explain", "cus_a", "--as-of", "2026-01-15", "--json")
    assert jan["mrr"] == 100.0
    assert [(ln["line_id"], ln["class"], ln["monthly_amount"]) for ln in jan["lines"]] == [
        ("il_a0", "recurring", 100.0)
    ]
    assert jan["lines"][0]["reason"] == "parent.type is subscription_item_details"
    assert [(ln["line_id"], ln["left_out"]) for ln in jan["left_out"]] == [("il_setup", "one_time")]
    feb = _run(cli, "explain", "cus_a", "--as-of", "2026-02-15", "--json")
    assert [(ln["line_id"], ln["left_out"]) for ln in feb["left_out"]] == [("il_void", "void invoice")]
    missing = cli.invoke(app, ["explain", "cus_nobody"])
    assert missing.exit_code == 2 and "cus_nobody" in missing.stderr


def test_rates_import_refuses_bad_csv_and_fixes_missing_rate(cli: CliRunner, tmp_path: Path) -> None:
    engine = _engine()
    store(engine, make_account(engine), priced_world("kes", (T(2026, 3), T(2026, 4)), amount=1_000_000))
    before = _run(cli, "mrr", "--as-of", "2026-03-10", "--json")
    assert before["mrr"] == 0.0 and before["customers"] == []
    assert [w["code"] for w in before["warnings"]] == ["missing_rate"]
    movements = _run(cli, "movements", "--json")
    assert [w["code"] for w in movements["warnings"]] == ["missing_rate"]
    explain = _run(cli, "explain", "cus_e", "--as-of", "2026-03-10", "--json")
    assert explain["left_out"][0]["left_out"] == "missing_rate" and explain["warnings"]

    bad = tmp_path / "bad.csv"
    bad.write_text("date,currency,rate\n2026-01-01,kes,one\n")
    result = cli.invoke(app, ["rates", "import", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "line 2" in result.stderr
    with engine.connect() as conn:
        assert list(conn.execute(select(table_of(FxRate)))) == []

    good = tmp_path / "rates.csv"
    good.write_text("date,currency,rate\n2026-01-01,kes,0.0125\n")
    imported = cli.invoke(app, ["rates", "import", str(good)])
    assert imported.exit_code == 0 and "imported 1 rate to USD" in imported.stdout
    after = _run(cli, "mrr", "--as-of", "2026-03-10", "--json")
    assert after["mrr"] == 125.0 and "warnings" not in after  # 10,000.00 KES x 0.0125


def test_a_euro_line_is_converted_at_the_ecb_rate_without_an_import(cli: CliRunner) -> None:
    engine = _engine()
    store(engine, make_account(engine), euro_world())
    payload = _run(cli, "mrr", "--as-of", "2026-03-10", "--json")
    assert payload["mrr"] == 118.05 and "warnings" not in payload  # 100.00 EUR x 1.1805 (Friday 2026-02-27)


def test_rebuild_command(cli: CliRunner) -> None:
    engine = _engine()
    store(engine, make_account(engine), monthly_world())
    result = cli.invoke(app, ["rebuild", "acme"])
    assert (
        result.exit_code == 0
        and "acme: 6 lines (1 one_time, 5 recurring); left out: 1 void invoice" in result.stdout
    )
    assert cli.invoke(app, ["rebuild", "nope"]).exit_code == 2


def test_a_future_as_of_is_refused_in_one_line(cli: CliRunner) -> None:
    for command in (["mrr"], ["metrics"], ["at-risk"], ["nightly"], ["explain", "cus_x"]):
        result = cli.invoke(app, [*command, "--as-of", "2999-01-01"])
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.count("\n") == 1 and "in the future" in result.stderr
