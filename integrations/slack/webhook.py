"""Posting to a Slack incoming webhook with slack_sdk's WebhookClient, retrying what can succeed later.

429 waits for Retry-After (up to a cap: a longer wait leaves the alert pending for the next run rather than
holding a worker), 500/503 and connection errors are retried with backoff, and everything else comes back as a
`Delivery` instead of an exception. 403/404/410 mean the webhook was revoked or its channel is gone: retrying
cannot help, the user must set a new URL. The URL is a secret: it never reaches a log line or an error text
(slack_sdk logs the URL when it retries, so its logger is silenced here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.error import URLError

from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook import WebhookClient

log = logging.getLogger(__name__)

REVOKED = (403, 404, 410)

_sdk_log = logging.getLogger("integrations.slack.sdk")
_sdk_log.addHandler(logging.NullHandler())
_sdk_log.propagate = False
_sdk_log.setLevel(logging.CRITICAL + 1)


@dataclass(frozen=True)
class Delivery:
    ok: bool
    status: int | None  # HTTP status of the last answer; None when no answer came
    error: str | None = None  # what went wrong, without the URL
    revoked: bool = False  # the webhook no longer exists or may not post: a new URL is needed


class CappedRateLimitHandler(RateLimitErrorRetryHandler):
    """Honors Retry-After, but only when the wait is at most `max_wait` seconds."""

    def __init__(self, max_retry_count: int, max_wait: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        for name, values in response.headers.items():
            if name.lower() == "retry-after" and values:
                try:
                    return float(values[0]) <= self.max_wait
                except ValueError:
                    return True
        return True


def retry_handlers(retries: int, backoff: float, max_retry_after: float) -> list[RetryHandler]:
    interval = BackoffRetryIntervalCalculator(backoff_factor=backoff)
    return [
        CappedRateLimitHandler(max_retry_count=retries, max_wait=max_retry_after),
        ServerErrorRetryHandler(max_retry_count=retries, interval_calculator=interval),
        ConnectionErrorRetryHandler(max_retry_count=retries, interval_calculator=interval),
    ]


def _describe(exc: BaseException, url: str) -> str:
    reason = exc.reason if isinstance(exc, URLError) else exc
    text = f"{type(exc).__name__}: {reason}"
    return text.replace(url, "<webhook>") if url else text


def post(
    url: str,
    payload: dict[str, Any],
    retries: int = 2,
    backoff: float = 0.5,
    max_retry_after: float = 30.0,
    timeout: int = 10,
) -> Delivery:
    """Post one message; never raises for an HTTP or network failure."""
    if not url.startswith(("https://", "http://")):
        return Delivery(False, None, "the Slack webhook URL is not an http(s) URL", revoked=True)
    client = WebhookClient(
        url,
        timeout=timeout,
        logger=_sdk_log,
        retry_handlers=retry_handlers(retries, backoff, max_retry_after),
    )
    try:
        response = client.send_dict(payload)
    except Exception as exc:  # connection refused/reset after the retries: Slack is down from here
        error = _describe(exc, url)
        log.warning("slack delivery failed: %s", error)
        return Delivery(False, None, error)
    status = response.status_code
    if status == 200:
        return Delivery(True, status)
    body = (response.body or "").strip()[:200].replace(url, "<webhook>")
    if status in REVOKED:
        error = (
            f"the Slack webhook was refused (HTTP {status} {body}): it was revoked or its channel "
            "removed; set a new one (`retention update NAME --slack-webhook` or SLACK_WEBHOOK_URL)"
        )
        log.warning("slack webhook revoked: HTTP %s %s", status, body)
        return Delivery(False, status, error, revoked=True)
    error = f"Slack answered HTTP {status} {body}".strip()
    log.warning("slack delivery failed: %s", error)
    return Delivery(False, status, error)
