"""A local HTTP server publishing reference-rate files as the ECB does (a zip holding one CSV), on 127.0.0.1,
and the history files the rate tests serve: the bundled ECB history with days added or cut off.

`retention rates update` fetches with urllib, so tests need a real server rather than a mocked call.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

from integrations.rates.ecb import bundled_history, history_text, zipped
from worker.demo.loopback import LoopbackServer, QuietHandler


class RatesServer(LoopbackServer):
    """Serves `files[path]` with 200, anything else with 404; counts the requests."""

    thread_name = "fake-ecb"

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests = 0
        self._lock = threading.Lock()

    def publish(self, path: str, data: bytes) -> str:
        """Serves `data` at `path`; returns its URL."""
        with self._lock:
            self.files[path] = data
        return f"{self.base_url}{path}"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with server._lock:
                    server.requests += 1
                    data = server.files.get(self.path.split("?", 1)[0])
                status, body = (200, data) if data is not None else (404, b"not found")
                self.send_response(status)
                self.send_header("Content-Type", "application/zip" if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def bundled_csv() -> str:
    return history_text(bundled_history())


def history_with(rows: list[str], drop_after: str | None = None) -> bytes:
    """The bundled history (newest first) with `rows` (e.g. "2026-11-02,1.2000,...") put on top, or cut to
    the days up to `drop_after`; zipped as the ECB publishes it."""
    header, *days = bundled_csv().splitlines()
    if drop_after is not None:
        days = [d for d in days if d[:10] <= drop_after]
    return zipped("\n".join([header, *rows, *days]) + "\n")


def day_row(day: str, usd: str, gbp: str) -> str:
    """One more day of the history: the newest published day's rates with USD and GBP set as given."""
    header, newest = bundled_csv().splitlines()[:2]
    codes = header.split(",")[1:]
    values = newest.split(",")[1:]
    values = [usd if c == "USD" else gbp if c == "GBP" else v for c, v in zip(codes, values, strict=True)]
    return ",".join([day, *values])
