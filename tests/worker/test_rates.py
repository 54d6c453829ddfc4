"""Exchange rates end to end on SQLite and PostgreSQL: lines converted at the ECB's rate of their period start
with no import, crossed for any reporting currency, imports keyed by reporting currency and overriding the ECB
for their dates, KES still flagged, `rates update` from a real local HTTP server, the nightly's daily refresh.

Every expected figure is worked from the bundled ECB file's rows (quoted beside it), rounded once, half-even.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import pytest
from sqlalchemy.engine import Engine

from tests.support.rates_server import RatesServer, day_row, history_with
from tests.support.rebuild_worlds import T, at, priced_world
from tests.support.stripe_rows import make_account, store
from worker.mrr_queries import missing_rate_warnings, mrr_at
from worker.rates import (
    FetchError,
    RatesError,
    daily_refresh,
    import_rates,
    rates_listing,
    source_line,
    update_rates,
)
from worker.rebuild import ledger_is_stale, rebuild_account

NOW = 1_795_000_000  # 2026-11-18: an instant for the stamps, independent of the wall clock


@pytest.fixture
def server() -> Iterator[RatesServer]:
    with RatesServer() as s:
        yield s


def _mrr(engine: Engine, account_id: int, when: datetime) -> dict[str, int]:
    with engine.connect() as conn:
        return {c.customer_id: c.mrr for c in mrr_at(conn, account_id, when)}


def test_a_euro_line_converts_at_the_ecb_rate_of_its_period_start_with_no_import(engine: Engine) -> None:
    account = make_account(engine)
    # 2026-03-01 is a Sunday: Friday 2026-02-27's rate (USD 1.1805) serves; 2026-03-02 has its own (1.1698)
    store(engine, account, priced_world("eur", (T(2026, 3, 1), T(2026, 4, 1)), customer="cus_sun"))
    store(engine, account, priced_world("eur", (T(2026, 3, 2), T(2026, 4, 2)), customer="cus_mon", n=1))
    result = rebuild_account(engine, account, today=date(2026, 3, 20))
    assert result.excluded == {}
    assert _mrr(engine, account.id or 0, at(2026, 3, 10)) == {"cus_sun": 11805, "cus_mon": 11698}


def test_gbp_reporting_crosses_usd_and_eur_through_the_ecb(engine: Engine) -> None:
    account = make_account(engine, currency="gbp")
    store(engine, account, priced_world("eur", (T(2026, 3, 2), T(2026, 4, 2)), customer="cus_eur"))
    store(engine, account, priced_world("usd", (T(2026, 3, 2), T(2026, 4, 2)), customer="cus_usd", n=1))
    rebuild_account(engine, account, today=date(2026, 3, 20))
    # 2026-03-02: USD 1.1698, GBP 0.8739 for 1 EUR. 100.00 EUR = 87.39 GBP;
    # 100.00 USD = 100 x 0.8739 / 1.1698 = 74.7050... GBP -> 74.71
    assert _mrr(engine, account.id or 0, at(2026, 3, 10)) == {"cus_eur": 8739, "cus_usd": 7471}


def test_an_import_overrides_the_ecb_for_the_dates_it_covers(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, priced_world("eur", (T(2026, 1, 1), T(2026, 2, 1)), customer="cus_jan"))
    store(engine, account, priced_world("eur", (T(2026, 3, 2), T(2026, 4, 2)), customer="cus_mar", n=1))
    assert import_rates(engine, "date,currency,rate\n2026-03-01,eur,1.25\n", "usd", now=NOW) == 1
    rebuild_account(engine, account, today=date(2026, 3, 20))
    # January is before the import: the ECB's 2025-12-31 rate (1.175; 1 January is a holiday) -> 117.50
    assert _mrr(engine, account.id or 0, at(2026, 1, 10)) == {"cus_jan": 11750}
    assert _mrr(engine, account.id or 0, at(2026, 3, 10)) == {"cus_mar": 12500}  # 1.25, not the ECB's 1.1698
    with engine.connect() as conn:
        assert source_line(conn, "usd") == (
            "ECB reference rates to 2026-10-30; imported: EUR 2026-03-01 to 2026-03-01"
        )
        assert source_line(conn, "gbp") == "ECB reference rates to 2026-10-30; imported: none"


def test_kes_is_still_flagged_until_a_rate_is_imported(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, priced_world("kes", (T(2026, 3, 2), T(2026, 4, 2)), amount=1_000_000))
    assert rebuild_account(engine, account, today=date(2026, 3, 20)).excluded == {"missing_rate": 1}
    with engine.connect() as conn:
        (warning,) = missing_rate_warnings(conn, account.id or 0, at=at(2026, 3, 10))
    assert "no KES exchange rate" in warning["message"]


def test_imported_rates_are_keyed_by_reporting_currency(engine: Engine) -> None:
    """The issue's case: a `usd` rate imported for one account must not convert another reporting currency."""
    usd_account = make_account(engine, "us-co", currency="usd")
    eur_account = make_account(engine, "eu-co", currency="eur")
    store(engine, usd_account, priced_world("eur", (T(2026, 3, 2), T(2026, 4, 2)), customer="cus_a"))
    store(engine, eur_account, priced_world("usd", (T(2026, 3, 2), T(2026, 4, 2)), customer="cus_b"))
    with pytest.raises(RatesError, match="line 2: 1 USD = 2 EUR is not plausible"):
        import_rates(engine, "date,currency,rate\n2026-01-01,usd,2\n", "eur")
    with pytest.raises(RatesError, match="line 2: USD is the reporting currency itself"):
        import_rates(engine, "date,currency,rate\n2026-01-01,usd,1\n", "usd")
    import_rates(engine, "date,currency,rate\n2026-01-01,usd,0.9\n", "eur", now=NOW)
    rebuild_account(engine, usd_account, today=date(2026, 3, 20))
    rebuild_account(engine, eur_account, today=date(2026, 3, 20))
    assert _mrr(engine, usd_account.id or 0, at(2026, 3, 10)) == {"cus_a": 11698}  # ECB: the import is EUR's
    assert _mrr(engine, eur_account.id or 0, at(2026, 3, 10)) == {"cus_b": 9000}  # 100.00 USD x 0.9


def test_a_rate_change_makes_the_ledger_stale_so_figures_are_restated(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, priced_world("eur", (T(2026, 3, 2), T(2026, 4, 2))))
    rebuild_account(engine, account, today=date(2026, 3, 20))
    assert not ledger_is_stale(engine, account)
    import_rates(engine, "date,currency,rate\n2026-01-01,eur,1.2\n", "gbp")  # another reporting currency
    assert not ledger_is_stale(engine, account)
    import_rates(engine, "date,currency,rate\n2026-01-01,eur,1.2\n", "usd", now=2_000_000_000)
    assert ledger_is_stale(engine, account)


def test_rates_update_stores_a_newer_history_and_conversions_use_it(
    engine: Engine, server: RatesServer
) -> None:
    account = make_account(engine)
    store(engine, account, priced_world("eur", (T(2026, 11, 30), T(2026, 12, 30))))
    rebuild_account(engine, account, today=date(2026, 12, 1))
    assert _mrr(engine, account.id or 0, at(2026, 12, 1)) == {"cus_e": 11172}  # 2026-10-30: USD 1.1172
    url = server.publish("/eurofxref-hist.zip", history_with([day_row("2026-11-27", "1.2000", "0.8500")]))
    result = update_rates(
        engine, f"{url}?token=s3cret"
    )  # stamped now: after the build, so the ledger is stale
    assert result.updated and result.last_day == date(2026, 11, 27)
    assert result.describe() == "ECB reference rates updated to 2026-11-27 (were to 2026-10-30)"
    assert ledger_is_stale(engine, account)
    rebuild_account(engine, account, today=date(2026, 12, 1))
    assert _mrr(engine, account.id or 0, at(2026, 12, 1)) == {"cus_e": 12000}  # Friday 2026-11-27: 1.2000
    listing = rates_listing(engine)
    assert listing["ecb"] == {
        "origin": "downloaded",
        "url": url,  # a mirror's token is never stored
        "first": "1999-01-04",
        "last": "2026-11-27",
        "last_error": None,
    }
    usd = next(c for c in listing["currencies"] if c["currency"] == "USD")
    assert usd == {
        "currency": "USD",
        "source": "ecb",
        "reporting_currency": None,
        "first": "1999-01-04",
        "last": "2026-11-27",
    }
    again = update_rates(engine, url, now=NOW + 60)
    assert not again.updated and again.describe() == "ECB reference rates already up to date (to 2026-11-27)"


def test_rates_update_refuses_a_broken_or_older_file_and_an_unreachable_url(
    engine: Engine, server: RatesServer
) -> None:
    newer = server.publish("/new.zip", history_with([day_row("2026-11-27", "1.2000", "0.8500")]))
    update_rates(engine, newer, now=NOW)
    broken = server.publish("/broken.zip", b"<html>maintenance</html>")
    with pytest.raises(RatesError, match="not the ECB's reference-rate history"):
        update_rates(engine, broken, now=NOW)
    older = server.publish("/old.zip", history_with([], drop_after="2026-10-01"))
    with pytest.raises(
        RatesError, match="rates end 2026-10-01, older than the rates in force \\(to 2026-11-27\\)"
    ):
        update_rates(engine, older, now=NOW)
    with pytest.raises(FetchError, match="answered HTTP 404"):
        update_rates(engine, f"{server.base_url}/nothing.zip", now=NOW)
    listing = rates_listing(engine)
    assert listing["ecb"]["last"] == "2026-11-27" and listing["ecb"]["url"] == newer  # nothing replaced
    assert "HTTP 404" in listing["ecb"]["last_error"]


def test_an_older_file_than_the_bundled_one_is_refused_before_any_download(
    engine: Engine, server: RatesServer
) -> None:
    older = server.publish("/old.zip", history_with([], drop_after="2026-10-01"))
    with pytest.raises(RatesError, match="older than the rates in force \\(to 2026-10-30\\)"):
        update_rates(engine, older, now=NOW)
    assert rates_listing(engine)["ecb"]["origin"] == "bundled"


def test_the_nightly_refresh_tries_once_a_day_never_raises_and_warns_of_stale_rates(
    engine: Engine, server: RatesServer
) -> None:
    url = server.publish("/r.zip", history_with([day_row("2026-11-27", "1.2000", "0.8500")]))
    off = daily_refresh(engine, "", date(2026, 11, 30), now=NOW)
    assert off == {"tried": False, "newest": "2026-10-30", "warning": off["warning"]}
    assert off["warning"].startswith("the newest ECB exchange rate is 31 days old (2026-10-30)")
    first = daily_refresh(engine, url, date(2026, 11, 30), now=NOW)
    assert first == {"tried": True, "updated": True, "newest": "2026-11-27"}  # 3 days old: no warning
    second = daily_refresh(engine, url, date(2026, 11, 30), now=NOW + 3600)  # another account's night
    assert second == {"tried": False, "newest": "2026-11-27"} and server.requests == 1
    server.stop()  # the next day the ECB is unreachable: recorded, no exception, the rates in force serve
    later = daily_refresh(engine, url, date(2026, 12, 2), now=NOW + 86_400)
    assert later["tried"] and "cannot reach" in later["error"]
    assert later["warning"].startswith("the newest ECB exchange rate is 5 days old (2026-11-27)")
    assert "cannot reach" in rates_listing(engine)["ecb"]["last_error"]
