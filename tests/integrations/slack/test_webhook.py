"""Delivery against a real local HTTP server standing in for the Slack webhook (slack_sdk uses urllib)."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from integrations.slack.webhook import post
from tests.support.slack_server import Answer, FakeSlack

MESSAGE = {"text": "hello", "blocks": []}


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: Slack is down."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/services/T1/B1/SECRETTOKEN"


def test_a_message_is_delivered(fake_slack: FakeSlack) -> None:
    result = post(fake_slack.url, MESSAGE)
    assert result.ok and result.status == 200
    assert fake_slack.delivered == [MESSAGE]


def test_429_waits_for_retry_after_then_delivers(fake_slack: FakeSlack) -> None:
    fake_slack.script(Answer(429, "rate_limited", {"Retry-After": "1"}))
    started = time.monotonic()
    result = post(fake_slack.url, MESSAGE, backoff=0.01)
    assert result.ok
    assert len(fake_slack.posts) == 2 and fake_slack.delivered == [MESSAGE]
    assert time.monotonic() - started >= 1.0  # the Retry-After second was honored


def test_429_asking_for_a_long_wait_leaves_the_message_undelivered(fake_slack: FakeSlack) -> None:
    fake_slack.script(Answer(429, "rate_limited", {"Retry-After": "120"}))
    result = post(fake_slack.url, MESSAGE, max_retry_after=5)
    assert not result.ok and result.status == 429 and not result.revoked
    assert len(fake_slack.posts) == 1


def test_500_and_503_are_retried(fake_slack: FakeSlack) -> None:
    fake_slack.script(Answer(500, "internal_error"), Answer(503, "service_unavailable"))
    result = post(fake_slack.url, MESSAGE, retries=2, backoff=0.01)
    assert result.ok and len(fake_slack.posts) == 3


def test_a_server_that_stays_down_is_a_failure_not_an_exception(fake_slack: FakeSlack) -> None:
    fake_slack.script(*[Answer(500, "internal_error")] * 3)
    result = post(fake_slack.url, MESSAGE, retries=2, backoff=0.01)
    assert not result.ok and result.status == 500 and not result.revoked
    assert len(fake_slack.posts) == 3 and fake_slack.delivered == []


def test_a_dropped_connection_is_retried(fake_slack: FakeSlack) -> None:
    fake_slack.script(Answer(drop=True))
    result = post(fake_slack.url, MESSAGE, retries=2, backoff=0.01)
    assert result.ok and len(fake_slack.posts) == 2


def test_slack_unreachable_never_shows_the_url(caplog: pytest.LogCaptureFixture) -> None:
    url = closed_port_url()
    with caplog.at_level(logging.DEBUG):
        result = post(url, MESSAGE, retries=1, backoff=0.01)
    assert not result.ok and result.status is None and not result.revoked
    assert result.error is not None and "SECRETTOKEN" not in result.error
    assert "SECRETTOKEN" not in caplog.text


@pytest.mark.parametrize(
    ("status", "body"), [(404, "no_service"), (410, "channel_is_archived"), (403, "invalid_token")]
)
def test_a_revoked_webhook_is_reported_and_not_retried(
    fake_slack: FakeSlack, status: int, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake_slack.script(Answer(status, body))
    with caplog.at_level(logging.DEBUG):
        result = post(fake_slack.url, MESSAGE, backoff=0.01)
    assert not result.ok and result.revoked and result.status == status
    assert result.error is not None and body in result.error
    assert len(fake_slack.posts) == 1
    assert "XXXXSECRETXXXX" not in (result.error + caplog.text)


def test_a_bad_payload_is_an_error_without_retry(fake_slack: FakeSlack) -> None:
    fake_slack.script(Answer(400, "invalid_blocks"))
    result = post(fake_slack.url, MESSAGE, backoff=0.01)
    assert not result.ok and not result.revoked and result.error == "Slack answered HTTP 400 invalid_blocks"
    assert len(fake_slack.posts) == 1
