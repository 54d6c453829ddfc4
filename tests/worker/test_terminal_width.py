"""Every table command, run on the sample company at 80, 120 and 200 columns: no line wider than the terminal,
no ellipsis, and every figure and id of the JSON shown whole in the text (worker/cli/tables.py).

The sample company is synced and rebuilt once for the module (worker.demo.run, the same steps as `retention
demo`); each test points its environment at that database and sets COLUMNS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from rich.console import Console
from typer.testing import CliRunner

from metrics.money import fmt_major
from worker.cli.main import app

WIDTHS = (80, 120, 200)
END = date(2026, 11, 1)
AS_OF = datetime(2026, 11, 15, tzinfo=UTC)
DAY = AS_OF.date().isoformat()


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a home holding the synced and rebuilt sample company (80 customers)."""
    home = tmp_path_factory.mktemp("terminal-width")
    env = {
        "RETENTION_HOME": str(home),
        "RETENTION_DATABASE_URL": f"sqlite:///{home / 'retention.db'}",
        "RETENTION_SECRET_KEY": Fernet.generate_key().decode(),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        from worker.cli.common import open_db
        from worker.demo.run import run_demo
        from worker.settings import get_settings

        settings = get_settings()
        run_demo(open_db(settings), settings, Console(quiet=True), 80, END, AS_OF, home / "report.html")
    yield env


@pytest.fixture
def at_width(company: dict[str, str], monkeypatch: pytest.MonkeyPatch, cli: CliRunner) -> Any:
    """Runs `retention ARGS` at a terminal width; returns stdout after checking the exit status."""
    for key, value in company.items():
        monkeypatch.setenv(key, value)

    def run(width: int, *args: str) -> str:
        monkeypatch.setenv("COLUMNS", str(width))
        result = cli.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    return run


def json_of(at_width: Any, *args: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(at_width(200, *args, "--json"))
    return payload


def assert_fits(text: str, width: int) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, f"{len(too_wide)} line(s) over {width} columns, e.g. {too_wide[0]!r}"
    assert "…" not in text, "an ellipsis cut something"


def shown(amount: float, currency: str, text: str) -> bool:
    """The amount is in the text whole: to the cent, or in whole units where the table said it rounds."""
    cents, whole = fmt_major(amount, currency), fmt_major(amount, currency, whole=True)
    pattern = rf"(?<![\d,.$-]){re.escape(cents)}(?![\d,])|(?<![\d,.$-]){re.escape(whole)}(?![\d,.])"
    return re.search(pattern, text) is not None


@pytest.mark.parametrize("width", WIDTHS)
def test_mrr_shows_every_customer_and_amount_whole(at_width: Any, width: int) -> None:
    payload = json_of(at_width, "mrr", "--as-of", DAY)
    text = at_width(width, "mrr", "--as-of", DAY)
    assert_fits(text, width)
    assert payload["customers"], "the sample company has paying customers"
    for c in payload["customers"]:
        assert c["id"] in text
        assert shown(c["mrr"], payload["currency"], text), c
    assert fmt_major(payload["mrr"], payload["currency"]) in text


@pytest.mark.parametrize("width", WIDTHS)
def test_movements_show_every_month_whole(at_width: Any, width: int) -> None:
    payload = json_of(at_width, "movements")
    text = at_width(width, "movements")
    assert_fits(text, width)
    for month in payload["months"]:
        assert month["month"] in text
        for key in ("new", "expansion", "contraction", "churn", "reactivation", "mrr"):
            assert shown(month[key], payload["currency"], text), (month["month"], key)


@pytest.mark.parametrize("width", WIDTHS)
def test_metrics_fit_and_explain_their_columns(at_width: Any, width: int) -> None:
    payload = json_of(at_width, "metrics", "--as-of", DAY)
    text = at_width(width, "metrics", "--as-of", DAY)
    assert_fits(text, width)
    cur = payload["currency"]
    for key in ("start", "expansion", "contraction", "churn", "end"):
        assert shown(payload["t12m"][key], cur, text), key
    for plan in payload["segments"]["plan"]:
        assert plan in text
    assert "NRR+fees: NRR if one-time charges" in " ".join(text.split())
    # warnings grouped: each kind once, with a count when it repeats
    kinds: dict[str, int] = {}
    for segment in payload["segments"]["cohort"].values():
        for w in segment["warnings"]:
            kinds[w["code"]] = kinds.get(w["code"], 0) + 1
    repeated = {code: n for code, n in kinds.items() if n > 1}
    assert repeated, "the sample company's signup-month cohorts are small"
    flat = " ".join(text.split())
    for code, n in repeated.items():
        assert f"{n} × {code.replace('_', ' ')}" in flat


def test_metrics_verbose_lists_every_warning(at_width: Any) -> None:
    payload = json_of(at_width, "metrics", "--as-of", DAY)
    text = " ".join(at_width(120, "metrics", "--as-of", DAY, "--verbose").split())
    for segment in payload["segments"]["cohort"].values():
        for w in segment["warnings"]:
            assert " ".join(w["message"].split()) in text


@pytest.mark.parametrize("width", WIDTHS)
def test_explain_shows_ids_and_why_each_line_is_left_out(at_width: Any, width: int) -> None:
    customers = json_of(at_width, "mrr", "--as-of", DAY)["customers"]
    for customer in customers[:5]:
        payload = json_of(at_width, "explain", customer["id"], "--as-of", DAY)
        text = at_width(width, "explain", customer["id"], "--as-of", DAY)
        assert_fits(text, width)
        flat = " ".join(text.split())
        for line in payload["lines"] + payload["left_out"]:
            assert line["line_id"] in text and line["invoice_id"] in text
        for line in payload["left_out"]:
            assert line["left_out"] != "recurring"  # a reason, not the line's class
            assert all(word in text for word in line["why"].split())  # wrapped at spaces, never cut
            if width == 200:
                assert line["why"] in flat


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", ["at-risk", "churned"])
def test_risk_lists_fit(at_width: Any, width: int, command: str) -> None:
    payload = json_of(at_width, command, "--as-of", DAY)
    text = at_width(width, command, "--as-of", DAY)
    assert_fits(text, width)
    assert payload["accounts"], f"the sample company has {command} accounts"
    for row in payload["accounts"]:
        assert row["customer_id"] in text
        assert fmt_major(row["mrr"], payload["currency"]) in text


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", [["accounts"], ["status"], ["alert", "--dry-run"]])
def test_account_commands_fit(at_width: Any, width: int, command: list[str]) -> None:
    text = at_width(width, *command)
    assert_fits(text, width)
    assert "demo" in text


def test_accounts_keep_the_key_mask_and_url_whole(at_width: Any) -> None:
    row = json_of(at_width, "accounts")["accounts"][0]
    text = at_width(80, "accounts")
    assert row["key"] in text and row["api_base"] in text and row["stripe_account"] in text


def test_alert_dry_run_reads_as_text_and_json_has_the_payloads(at_width: Any) -> None:
    text = at_width(80, "alert", "--dry-run", "--as-of", DAY)
    assert "dry run, nothing sent" in text and '"blocks"' not in text
    payload = json.loads(at_width(80, "alert", "--dry-run", "--as-of", DAY, "--json"))
    entry = payload["accounts"][0]
    assert entry["account"] == "demo" and entry["payloads"][0]["blocks"]


def test_a_date_before_the_first_invoice_says_so(at_width: Any) -> None:
    text = at_width(80, "mrr", "--as-of", "1999-01-01")
    assert "before the first invoiced subscription period" in " ".join(text.split())
    payload = json.loads(at_width(80, "mrr", "--as-of", "1999-01-01", "--json"))
    assert payload["warnings"][0]["code"] == "before_first_invoice"


def test_the_report_path_is_where_the_fixture_wrote_it(company: dict[str, str]) -> None:
    assert (Path(company["RETENTION_HOME"]) / "report.html").stat().st_size > 0
