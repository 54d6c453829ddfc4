"""Rates: the imported CSV (validated with line numbers), the ECB history crossed through EUR, and which
source gives the rate in force on a day."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from metrics.rates import EcbHistory, RatesError, RateTable, parse_ecb_csv, parse_rates_csv

# A small history in the ECB's format (newest first, a trailing comma, N/A where not published): Friday
# 2026-02-27 and Monday 2026-03-02; CYP no longer published after 2026-02-13, ISK missing one day only.
ECB_CSV = (
    "Date,USD,GBP,CYP,JPY,ISK,\n"
    "2026-03-02,1.1698,0.8739,N/A,182.5,N/A,\n"
    "2026-02-27,1.1805,0.8763,N/A,183.2,140,\n"
    "2026-02-20,1.2000,0.8800,N/A,180,141,\n"
    "2026-02-13,1.2100,0.8900,0.5850,181,142,\n"
)


def _ecb() -> EcbHistory:
    return parse_ecb_csv(ECB_CSV, strict=True)


def test_parse_and_lookup_the_rate_in_force() -> None:
    rates = parse_rates_csv(
        "date,currency,rate\n2026-01-01,EUR,1.08\n2026-03-01,eur,1.10\n2026-01-01,jpy,0.0067\n", "usd"
    )
    table = RateTable(rates, "usd")
    assert table.rate_on("eur", date(2025, 12, 31)) is None  # before the first rate: no rate, never 1:1
    assert table.rate_on("EUR", date(2026, 1, 1)) == Decimal("1.08")
    assert table.rate_on("eur", date(2026, 2, 28)) == Decimal("1.08")
    assert table.rate_on("eur", date(2026, 3, 1)) == Decimal("1.10")
    assert table.rate_on("jpy", date(2030, 1, 1)) == Decimal("0.0067")
    assert table.rate_on("gbp", date(2026, 6, 1)) is None


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("", "header"),
        ("day,cur,rate\n2026-01-01,eur,1\n", "line 1: the first line must be the header"),
        ("date,currency,rate\n", "no rates"),
        ("date,currency,rate\n2026-13-01,eur,1\n", "line 2: date '2026-13-01'"),
        ("date,currency,rate\n2026-01-01,euro,1\n", "line 2: 'euro' is not an ISO 4217 currency code"),
        ("date,currency,rate\n2026-01-01,eur,1\n2026-01-01,XYZ,1\n", "line 3: 'XYZ' is not an ISO 4217"),
        (
            "date,currency,rate\n2026-01-01,eur,1\n\n2026-01-01,usd,1\n",
            "line 4: USD is the reporting currency",
        ),
        ("date,currency,rate\n2026-01-01,eur,1\n2026-01-02,eur,abc\n", "line 3: rate 'abc' is not a number"),
        ("date,currency,rate\n2026-01-01,eur,-1\n", "line 2: rate '-1' must be a positive number"),
        ("date,currency,rate\n2026-01-01,eur,0\n", "line 2: rate '0' must be a positive number"),
        ("date,currency,rate\n2026-01-01,eur,Infinity\n", "line 2: rate 'Infinity' must be a positive"),
        (
            "date,currency,rate\n2026-01-01,eur,1e308\n",
            "line 2: rate '1e308' is not a plausible exchange rate",
        ),
        ("date,currency,rate\n2026-01-01,kes,0.000000001\n", "line 2: rate '0.000000001' is not a plausible"),
        ("date,currency,rate\n2026-01-01,eur\n", "line 2: expected 3 columns"),
        (
            "date,currency,rate\n2026-01-01,eur,1\n2026-01-01,EUR,1.1\n",
            "line 3: a second EUR rate for 2026-01-01 (line 2)",
        ),
    ],
)
def test_bad_csv_is_refused_with_the_line(text: str, fragment: str) -> None:
    with pytest.raises(RatesError) as info:
        parse_rates_csv(text, "usd")
    assert fragment in str(info.value)


def test_a_rate_far_from_the_ecbs_is_refused_as_implausible() -> None:
    """The issue's case: a `usd,2` line meant for another account, imported for EUR reporting (the ECB says
    1 USD = 1/1.1805 = 0.847 EUR on 2026-02-27), and an inverted pair."""
    reference = RateTable((), "eur", _ecb())
    with pytest.raises(RatesError, match=r"line 2: 1 USD = 2 EUR is not plausible"):
        parse_rates_csv("date,currency,rate\n2026-02-27,usd,2\n", "eur", reference)
    with pytest.raises(RatesError, match="line 3"):  # 1 GBP = 0.8763/1.1805 = 0.742 USD is GBP inverted
        parse_rates_csv("date,currency,rate\n2026-02-27,jpy,0.0064\n2026-02-27,gbp,0.7423\n", "usd", _usd())
    ok = parse_rates_csv("date,currency,rate\n2026-02-27,usd,0.85\n2026-02-27,kes,0.0066\n", "eur", reference)
    assert [r.currency for r in ok] == ["usd", "kes"]  # near the ECB's; KES is not published: bounds only


def _usd() -> RateTable:
    return RateTable((), "usd", _ecb())


def test_ecb_rates_cross_through_eur_exactly_and_carry_over_weekends() -> None:
    usd = _usd()
    assert usd.rate_on("eur", date(2026, 2, 27)) == Fraction("1.1805")
    assert usd.rate_on("eur", date(2026, 3, 1)) == Fraction("1.1805")  # Sunday: Friday's rate
    assert usd.rate_on("eur", date(2026, 3, 2)) == Fraction("1.1698")
    assert usd.rate_on("eur", date(2026, 2, 12)) is None  # before the history: no rate
    # 1 GBP in USD = 1.1805 / 0.8763, kept as the exact fraction of the two published decimals
    assert usd.rate_on("gbp", date(2026, 2, 28)) == Fraction(11805, 8763)
    gbp = RateTable((), "gbp", _ecb())
    assert gbp.rate_on("usd", date(2026, 3, 2)) == Fraction(8739, 11698)
    assert gbp.rate_on("eur", date(2026, 3, 2)) == Fraction("0.8739")
    eur = RateTable((), "eur", _ecb())
    assert eur.rate_on("jpy", date(2026, 3, 2)) == 1 / Fraction("182.5")
    assert eur.rate_on("kes", date(2026, 3, 2)) is None  # not published by the ECB


def test_a_currency_no_longer_published_has_no_rate_after_its_last_day() -> None:
    usd = _usd()
    assert usd.rate_on("cyp", date(2026, 2, 13)) == Fraction("1.21") / Fraction("0.585")
    assert usd.rate_on("cyp", date(2026, 2, 14)) is None  # never its last rate carried on for ever
    assert usd.rate_on("isk", date(2026, 3, 2)) == Fraction("1.1698") / 140  # a one-day gap carries over
    assert _ecb().span("cyp") == (date(2026, 2, 13), date(2026, 2, 13))
    assert _ecb().currencies() == ["cyp", "eur", "gbp", "isk", "jpy", "usd"]


def test_imported_rates_override_the_ecb_from_their_first_day() -> None:
    imported = parse_rates_csv("date,currency,rate\n2026-03-01,eur,1.25\n", "usd")
    table = RateTable(imported, "usd", _ecb())
    assert table.rate_on("eur", date(2026, 2, 27)) == Fraction("1.1805")
    assert table.rate_on("eur", date(2026, 3, 2)) == Fraction("1.25")  # though the ECB published that day
    assert table.rate_on("kes", date(2026, 3, 2)) is None


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("", "line 1: not the ECB's reference-rate history"),
        ("<html>Service unavailable</html>\n", "line 1"),
        ("Date,USD,\n", "holds no rates"),
        ("Date,USD,\n2026-03-02,1.1698,\nyesterday,1.2,\n", "line 3: 'yesterday' is not a date"),
        ("Date,USD,\n2026-03-02,abc,\n", "line 2: USD 'abc' is not a number"),
        ("Date,USD,\n2026-03-02,-1,\n", "line 2: USD '-1' is not a positive rate"),
        ("Date,USD,\n2026-03-02,1.1,\n2026-03-02,1.2,\n", "lists a day twice"),
    ],
)
def test_a_broken_ecb_file_is_refused(text: str, fragment: str) -> None:
    with pytest.raises(RatesError) as info:
        parse_ecb_csv(text, strict=True)
    assert fragment in str(info.value)


def test_the_ecb_history_spans() -> None:
    history = _ecb()
    assert (history.first_day, history.last_day) == (date(2026, 2, 13), date(2026, 3, 2))
    assert history.span("eur") == (date(2026, 2, 13), date(2026, 3, 2))
    assert history.span("kes") is None


@pytest.mark.parametrize("cut", ["2022-03-08", "2022-03-25", "2026-01-09", "2026-01-20", "2026-06-15"])
def test_a_longer_history_converts_every_day_before_changed_after_alike(cut: str) -> None:
    """An ECB file that only adds days to an earlier one: every cross rate before `changed_after` is the
    earlier file's (RUB stopped on 2022-03-01 and BGN on 2025-12-31: the cuts put the added days across the 14
    days that turn them discontinued). A later rebuild restates only the lines converted from that day on."""
    from integrations.rates.ecb import bundled_history, history_text

    header, *days = history_text(bundled_history()).splitlines()
    full = parse_ecb_csv("\n".join([header, *days]))
    earlier = parse_ecb_csv("\n".join([header, *(d for d in days if d[:10] <= cut)]))
    assert full.digest_until(earlier.last_day) == earlier.digest_until(earlier.last_day)
    assert full.digest_until(earlier.last_day) != full.digest_until(full.last_day)
    since = full.changed_after(earlier.last_day)
    assert since <= earlier.last_day + timedelta(days=1)
    differs = []
    for currency in ("usd", "gbp", "rub", "bgn", "jpy", "eur"):
        day = earlier.last_day - timedelta(days=40)
        while day <= earlier.last_day + timedelta(days=40):
            same = earlier.cross(currency, "usd", day) == full.cross(currency, "usd", day)
            assert same or day >= since, (currency, day)
            differs += [] if same else [day]
            day += timedelta(days=1)
    # the day named is not merely early: the first change is on it, or after the weekend that follows it
    assert differs and min(differs) - since <= timedelta(days=2)
