"""The one place that builds a `stripe.StripeClient`: pinned API version, base URL from the account, read-
only.

Nothing outside `integrations/` imports `stripe`. `StripeReader` is the only way the sync talks to Stripe: GET
only, under the account's request budget, with our own bounded retries (the SDK does not
retry a plain 429).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson
import requests
import stripe
import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from integrations.stripe.config import DEFAULT_API_BASE, StripeConfig
from integrations.stripe.ratelimit import Limiter, make_limiter
from metrics.cycles import without_cycle_collection

__all__ = [
    "API_VERSION",
    "DEFAULT_API_BASE",
    "StripeConfig",
    "StripeReadError",
    "StripeReader",
    "make_client",
]

# The API version every request asks for; stripe-python 16.1.0 pins the same (docs/stripe.md).
API_VERSION = "2026-10-28.endive"

Obj = dict[str, Any]


def parse_body(body: bytes | str) -> Any:
    """A response body as plain dicts and lists, parsed with orjson (a ValueError when it is not JSON).

    The cyclic garbage collector is paused while one body is parsed: a page of invoices is tens of thousands
    of new containers, enough to set off several collections that traverse everything alive (measured: 5x
    the parse itself), and a JSON tree holds no cycles for it to find. Other threads may switch it back on
    early; that only costs time.
    """
    with without_cycle_collection():
        return orjson.loads(body)


def _read_all(stream: Any) -> bytes:
    """A streamed response body, whole (gzip undone). A connection broken halfway raises the SDK's own
    retryable connection error, as a failure before the body would."""
    try:
        return bytes(stream.read(decode_content=True))
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise stripe.APIConnectionError(f"the response body was cut off ({type(exc).__name__})") from None


def make_client(config: StripeConfig, max_network_retries: int = 0) -> stripe.StripeClient:
    """A StripeClient bound to the account's base URL and our pinned API version."""
    return stripe.StripeClient(
        config.api_key,
        base_addresses={"api": config.api_base},
        stripe_version=API_VERSION,
        max_network_retries=max_network_retries,
        http_client=stripe.RequestsClient(timeout=config.timeout, session=_session(config.api_base)),
    )


def _session(api_base: str) -> requests.Session:
    """The HTTP session every thread of a reader shares: proxies read from the environment once, here, not
    on every request (requests otherwise walks the whole environment per call), and a connection pool as
    large as the sync's fetchers and line readers together."""
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(api_base))
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class StripeReadError(Exception):
    """A read that failed for good (after retries). The message names account and path, never the key."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotFound(StripeReadError):
    """404: the object is gone (or never existed)."""


def should_retry(exc: BaseException) -> bool:
    """Stripe-Should-Retry wins when present; else 429, 409, 5xx and connection failures are transient."""
    if isinstance(exc, stripe.APIConnectionError):
        return True
    if not isinstance(exc, stripe.StripeError):
        return False
    header = (exc.headers or {}).get("Stripe-Should-Retry") if exc.headers else None
    if header is not None:
        return str(header).lower() == "true"
    status = exc.http_status or 0
    return status in (409, 429) or status >= 500


@dataclass
class RetryPolicy:
    """Bounded exponential backoff with full jitter."""

    attempts: int = 6
    base: float = 0.25
    max_wait: float = 8.0


class StripeReader:
    """GET-only access to one account: rate budget, retries, request count, plain-dict JSON."""

    def __init__(
        self, config: StripeConfig, limiter: Limiter | None = None, retry: RetryPolicy | None = None
    ) -> None:
        self.config = config
        self.client = make_client(config)  # no SDK retries: ours below see every attempt and honor the budget
        self.limiter = limiter or make_limiter(
            config.rps, config.redis_url, config.account_label or config.api_base
        )
        self.retry = retry or RetryPolicy()
        self.requests = 0
        self.retries = 0
        self._count_lock = threading.Lock()

    def _once(self, path: str, params: Obj) -> Obj:
        self.limiter.acquire()
        with self._count_lock:
            self.requests += 1
        # What `client.raw_request` does, minus its StripeResponse: that parses every body with the stdlib
        # into OrderedDicts, which we would throw away. Errors (non-2xx) still go through the SDK's own
        # interpretation, so they raise the same stripe errors; a 2xx body is parsed once, with orjson, into
        # the plain dicts records.py reads. The body is asked for as a stream and read here: handed over
        # whole, the SDK formats it into a debug log line (decoded, searched for spaces, repr'd) on every
        # call even with logging off: a quarter of our CPU per request in a full sync.
        requestor = self.client._requestor
        stream, code, headers = requestor.request_raw(
            "get",
            path,
            params=params,
            options={},
            is_streaming=True,
            base_address="api",
            api_mode="V1",
            usage=["raw_request"],
        )
        body = _read_all(stream)
        if not 200 <= code < 300:
            requestor._interpret_response(body, code, headers, "V1")  # raises the matching stripe error
        data = parse_body(body)  # type: ignore[arg-type]
        if not isinstance(data, dict):
            raise StripeReadError(f"{self._where(path)}: the response is not a JSON object")
        return data

    def _count_retry(self, state: RetryCallState) -> None:
        with self._count_lock:
            self.retries += 1

    def get(self, path: str, params: Obj | None = None) -> Obj:
        """One GET, retried on transient failures; a failure that remains raises StripeReadError."""
        retrying = Retrying(
            retry=retry_if_exception(should_retry),
            wait=wait_random_exponential(multiplier=self.retry.base, max=self.retry.max_wait),
            stop=stop_after_attempt(self.retry.attempts),
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            return retrying(self._once, path, dict(params or {}))
        except stripe.StripeError as exc:
            raise self._error(path, exc) from None
        except ValueError as exc:  # a body that is not JSON
            raise StripeReadError(f"{self._where(path)}: malformed JSON from Stripe ({exc})") from None

    def _where(self, path: str) -> str:
        return f"account {self.config.account_label or '?'}: GET {path}"

    def _error(self, path: str, exc: stripe.StripeError) -> StripeReadError:
        err = exc.error
        kind = getattr(err, "type", None) if err is not None else None
        code = exc.code or (getattr(err, "code", None) if err is not None else None)
        status = exc.http_status
        if isinstance(exc, stripe.APIConnectionError):
            detail = "connection failed"
        else:
            detail = f"HTTP {status} {kind or type(exc).__name__}" + (f" ({code})" if code else "")
        cls = NotFound if status == 404 else StripeReadError
        return cls(f"{self._where(path)} failed after retries: {detail}", status=status, code=code)
