"""Exchange rates end to end on SQLite and PostgreSQL: lines converted at the ECB's rate of their period start
with no import, crossed for any reporting currency, imports keyed by reporting currency and overriding the ECB
for their dates, KES still flagged, `rates update` from a real local HTTP server, the nightly's daily refresh.

Every expected figure is worked from the bundled ECB file's rows (quoted beside it), rounded once, half-even.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from integrations.rates.ecb import history_text, zipped
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


def _ledger(engine: Engine, account_id: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The account's ledger amounts and snapshots, to compare two builds."""
    lines = text(
        "SELECT line_id, customer_id, monthly_reporting, amount_reporting, counted, excluded_reason "
        "FROM ledger_line WHERE account_id = :a ORDER BY line_id"
    )
    snaps = text(
        "SELECT customer_id, day, mrr, one_time, plan FROM mrr_snapshot WHERE account_id = :a "
        "ORDER BY customer_id, day"
    )
    with engine.connect() as conn:
        return (
            [tuple(r) for r in conn.execute(lines, {"a": account_id})],
            [tuple(r) for r in conn.execute(snaps, {"a": account_id})],
        )


def test_a_download_of_new_days_rebuilds_only_the_customers_converted_on_them(
    engine: Engine, server: RatesServer
) -> None:
    """The nightly downloads the ECB's file every working day: the new days restate the lines converted on
    them, not the whole ledger; the result is the full rebuild's. A file that corrects an older day (or a
    currency turned discontinued) restates from there."""
    account = make_account(engine)
    store(engine, account, priced_world("eur", (T(2026, 3, 2), T(2026, 4, 2)), customer="cus_old"))
    store(engine, account, priced_world("eur", (T(2026, 11, 30), T(2026, 12, 30)), customer="cus_new", n=1))
    store(engine, account, priced_world("usd", (T(2026, 11, 30), T(2026, 12, 30)), customer="cus_usd", n=2))
    assert rebuild_account(engine, account, today=date(2026, 12, 1)).mode == "full"
    url = server.publish("/h.zip", history_with([day_row("2026-11-27", "1.2000", "0.8500")]))
    assert update_rates(engine, url, now=NOW).updated
    result = rebuild_account(engine, account, today=date(2026, 12, 1))
    assert (result.mode, result.customers) == ("incremental", 1)  # cus_new: its period starts after 10-30
    assert _mrr(engine, account.id or 0, at(2026, 12, 1)) == {"cus_new": 12000, "cus_usd": 10000}
    incremental = _ledger(engine, account.id or 0)
    assert rebuild_account(engine, account, today=date(2026, 12, 1), full=True).mode == "full"
    assert _ledger(engine, account.id or 0) == incremental
    # nothing new: nothing rebuilt
    assert rebuild_account(engine, account, today=date(2026, 12, 1)).customers == 0
    # the ECB corrects 2026-03-02 (USD 1.1698 -> 1.3000) and adds a day: everything is restated
    header, *days = history_text(server.files["/h.zip"]).splitlines()
    days = [d.replace(d.split(",")[1], "1.3000", 1) if d.startswith("2026-03-02") else d for d in days]
    server.publish("/h.zip", zipped("\n".join([header, day_row("2026-11-30", "1.2100", "0.8500"), *days])))
    assert update_rates(engine, url, now=NOW + 100).updated
    result = rebuild_account(engine, account, today=date(2026, 12, 1))
    assert result.mode == "full"
    assert _mrr(engine, account.id or 0, at(2026, 3, 10))["cus_old"] == 13000
