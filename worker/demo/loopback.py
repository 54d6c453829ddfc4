"""The life cycle shared by our local stand-ins for Stripe and Slack: a threaded HTTP server on 127.0.0.1.

Tests, benchmarks and the demo need real servers (slack_sdk posts with urllib, the Stripe SDK with requests);
each stand-in only says how it answers (`handler_class`), this class starts and stops it.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class QuietHandler(BaseHTTPRequestHandler):
    """What every stand-in's handler shares: keep-alive like the real services, and no log lines in tests."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep tests quiet
        return

    def drop(self) -> None:
        """Closes the connection without an answer: how a client sees a network failure."""
        self.close_connection = True
        self.connection.shutdown(2)


class LoopbackServer:
    """Binds an ephemeral port on 127.0.0.1; `with` starts and stops it."""

    thread_name = "loopback-server"
    _server: ThreadingHTTPServer | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        """The class http.server answers each request with; each stand-in says how it answers."""
        raise NotImplementedError

    def start(self) -> Self:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class())
        server.daemon_threads = True
        self._server = server
        # a short poll interval: stop() waits for the serving loop to notice, once per test
        threading.Thread(
            target=server.serve_forever, args=(0.05,), name=self.thread_name, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"
