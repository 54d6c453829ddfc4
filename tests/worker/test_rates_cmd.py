"""`retention rates import / update / list` through the real command line, and the nightly's rates warning:
one line and exit 2 for anything refused, nothing replaced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.rates_server import RatesServer, day_row, history_with
from tests.support.stripe_rows import make_account
from worker.cli.main import app
from worker.db import ensure_schema
from worker.demo.sample import build_sample_world
from worker.demo.stripe_server import FakeStripe
from worker.settings import ConfigError, get_settings

KEY = "sk_test_123"


@pytest.fixture
def server() -> Iterator[RatesServer]:
    with RatesServer() as s:
        yield s


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rates.csv"
    path.write_text(text)
    return str(path)


def _one_line_refusal(result: object) -> str:
    assert getattr(result, "exit_code") == 2  # noqa: B009
    stderr: str = getattr(result, "stderr")  # noqa: B009
    assert stderr.count("\n") == 1 and stderr.startswith("error: ")
    return stderr


def test_import_names_the_line_and_the_reporting_currency(cli: CliRunner, tmp_path: Path) -> None:
    engine = ensure_schema(get_settings().database_url)
    make_account(engine, "us-co", "usd")
    make_account(engine, "eu-co", "eur")
    good = _csv(tmp_path, "date,currency,rate\n2026-01-01,usd,0.9\n")
    ambiguous = _one_line_refusal(cli.invoke(app, ["rates", "import", good]))
    assert "accounts report in EUR, USD" in ambiguous and "--reporting-currency" in ambiguous
    bogus = _one_line_refusal(cli.invoke(app, ["rates", "import", good, "--reporting-currency", "xyz"]))
    assert "'xyz' is not an ISO 4217 currency code" in bogus
    bad = _csv(tmp_path, "date,currency,rate\n2026-01-01,usd,0.9\n2026-01-01,XYZ,1\n")
    refused = _one_line_refusal(cli.invoke(app, ["rates", "import", bad, "--reporting-currency", "EUR"]))
    assert "line 3: 'XYZ' is not an ISO 4217 currency code; nothing was imported" in refused
    itself = _csv(tmp_path, "date,currency,rate\n2026-01-01,eur,1\n")
    refused = _one_line_refusal(cli.invoke(app, ["rates", "import", itself, "--reporting-currency", "eur"]))
    assert "line 2: EUR is the reporting currency itself" in refused
    huge = _csv(tmp_path, "date,currency,rate\n2026-01-01,kes,1e308\n")
    refused = _one_line_refusal(cli.invoke(app, ["rates", "import", huge, "--reporting-currency", "eur"]))
    assert "line 2: rate '1e308' is not a plausible exchange rate" in refused
    good = _csv(tmp_path, "date,currency,rate\n2026-01-01,usd,0.9\n")
    ok = cli.invoke(app, ["rates", "import", good, "--reporting-currency", "eur"])
    assert ok.exit_code == 0 and ok.stdout.startswith("imported 1 rate to EUR\n")
    assert "eu-co:" in ok.stdout and "us-co:" not in ok.stdout  # only the accounts it converts for rebuild
    listing = json.loads(cli.invoke(app, ["rates", "list", "--json"]).stdout)
    assert {"currency": "USD", "source": "imported", "reporting_currency": "EUR", "first": "2026-01-01",
            "last": "2026-01-01"} in listing["currencies"]  # fmt: skip


def test_update_fetches_checks_and_stores(
    cli: CliRunner, server: RatesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.publish("/eurofxref-hist.zip", history_with([day_row("2026-11-27", "1.2000", "0.8500")]))
    monkeypatch.setenv("RETENTION_RATES_URL", url)
    result = cli.invoke(app, ["rates", "update"])
    assert result.exit_code == 0, result.output
    assert "ECB reference rates updated to 2026-11-27 (were to 2026-10-30)" in result.stdout
    listing = cli.invoke(app, ["rates", "list"])
    assert listing.exit_code == 0
    assert listing.stdout.startswith("ECB reference rates 1999-01-04 to 2026-11-27 (downloaded)\n")
    assert "CYP" in listing.stdout and "2007-12-31" in listing.stdout  # CYP's last rate, before the euro

    monkeypatch.setenv("RETENTION_RATES_URL", server.publish("/broken.zip", b"PK\x03\x04 not really"))
    refused = _one_line_refusal(cli.invoke(app, ["rates", "update"]))
    assert "not a readable zip file" in refused and "the rates in force are kept" in refused
    monkeypatch.setenv("RETENTION_RATES_URL", server.publish("/old.zip", history_with([], "2026-09-30")))
    assert "older than the rates in force" in _one_line_refusal(cli.invoke(app, ["rates", "update"]))
    monkeypatch.setenv("RETENTION_RATES_URL", f"{server.base_url}/gone.zip")
    server.stop()
    assert "cannot reach" in _one_line_refusal(cli.invoke(app, ["rates", "update"]))
    monkeypatch.setenv("RETENTION_RATES_URL", "")
    assert "RETENTION_RATES_URL is empty" in _one_line_refusal(cli.invoke(app, ["rates", "update"]))
    listing = json.loads(cli.invoke(app, ["rates", "list", "--json"]).stdout)
    assert listing["ecb"]["last"] == "2026-11-27"  # nothing replaced


def test_a_bad_rates_url_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_RATES_URL", "ecb.europa.eu/rates.zip")
    with pytest.raises(ConfigError, match="RETENTION_RATES_URL: use an http") as info:
        get_settings()
    assert "ecb.europa.eu" not in str(info.value)  # the value is never echoed
    monkeypatch.setenv("RETENTION_RATES_URL", " ")
    assert get_settings().retention_rates_url == ""  # empty: the nightly never downloads


def test_the_nightly_warns_of_stale_rates_and_an_unreachable_source_but_carries_on(
    cli: CliRunner, server: RatesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_sample_world(seed=11, customers=10, months=6, end=date(2026, 11, 1))
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)  # one machine: the lock lives in the database
    monkeypatch.setenv("RETENTION_RATES_URL", f"{server.base_url}/eurofxref-hist.zip")
    server.stop()  # the ECB cannot be reached tonight
    with FakeStripe(world, api_keys=(KEY,)) as stripe:
        connected = cli.invoke(
            app, ["connect", "acme", "--api-base", stripe.url, "--rps", "0"], env={"STRIPE_API_KEY": KEY}
        )
        assert connected.exit_code == 0, connected.output
        result = cli.invoke(app, ["nightly", "acme", "--as-of", "2026-11-10"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("acme: done")
    assert "acme: warning: rates update: cannot reach" in result.stderr
    assert "acme: warning: the newest ECB exchange rate is 11 days old (2026-10-30)" in result.stderr
