"""A local stand-in for a Slack incoming webhook on 127.0.0.1: records every post, answers as scripted.

slack_sdk posts with urllib, so tests need a real HTTP server rather than a mocked session.
Queue answers with `script(...)` (status, body, headers, or `drop` to close the connection unanswered);
once the script is empty every post gets 200 "ok", as Slack answers.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from worker.demo.loopback import LoopbackServer, QuietHandler


@dataclass
class Answer:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


class FakeSlack(LoopbackServer):
    thread_name = "fake-slack"

    def __init__(self, path: str = "/services/T000/B000/XXXXSECRETXXXX") -> None:
        self.path = path
        self.answers: list[Answer] = []
        self.posts: list[dict[str, Any]] = []  # every post received, answered or not
        self.delivered: list[dict[str, Any]] = []  # posts answered 200
        self._lock = threading.Lock()

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self.answers.extend(answers)

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _handler(self)

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.path}"

    def next_answer(self) -> Answer:
        with self._lock:
            return self.answers.pop(0) if self.answers else Answer()


def _handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class SlackHandler(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with fake._lock:
                fake.posts.append(body)
            answer = fake.next_answer() if self.path == fake.path else Answer(404, "no_service")
            if answer.drop:
                self.drop()
                return
            if answer.status == 200:
                with fake._lock:
                    fake.delivered.append(body)
            payload = answer.body.encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    return SlackHandler
