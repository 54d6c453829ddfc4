"""StripeReader against `responses`: our retries for 429/5xx/dropped connections, Stripe-Should-Retry, no key
leaks."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses

from integrations.stripe.client import (
    API_VERSION,
    NotFound,
    RetryPolicy,
    StripeConfig,
    StripeReader,
    StripeReadError,
    _session,
)
from integrations.stripe.ratelimit import Unlimited

BASE = "http://stripe.test"
KEY = "sk_test_secretvalue123"
URL = f"{BASE}/v1/customers"
PAGE = {"object": "list", "data": [{"id": "cus_1"}], "has_more": False}


def reader(attempts: int = 4) -> StripeReader:
    return StripeReader(
        StripeConfig(api_key=KEY, api_base=BASE, account_label="acme"),
        limiter=Unlimited(),
        retry=RetryPolicy(attempts=attempts, base=0.001, max_wait=0.002),
    )


def err(status: int, type_: str = "api_error") -> dict[str, object]:
    return {"error": {"type": type_, "code": "x", "message": "boom"}}


@responses.activate
def test_plain_429_is_retried_by_us_then_succeeds() -> None:
    responses.get(URL, json=err(429, "rate_limit_error"), status=429)
    responses.get(URL, json=err(429, "rate_limit_error"), status=429)
    responses.get(URL, json=PAGE)
    r = reader()
    assert r.get("/v1/customers", {"limit": 100}) == PAGE
    assert (r.requests, r.retries) == (3, 2)
    sent = responses.calls[-1].request
    assert sent.headers["Stripe-Version"] == API_VERSION and "limit=100" in (sent.url or "")
    assert sent.method == "GET"


@responses.activate
def test_5xx_and_dropped_connections_are_retried() -> None:
    responses.get(URL, json=err(500), status=500)
    responses.get(URL, body=requests.ConnectionError("reset by peer"))
    responses.get(URL, json=err(503), status=503)
    responses.get(URL, json=PAGE)
    assert reader().get("/v1/customers") == PAGE


@responses.activate
def test_stripe_should_retry_false_stops_at_once_even_on_500() -> None:
    responses.get(URL, json=err(500), status=500, headers={"Stripe-Should-Retry": "false"})
    responses.get(URL, json=PAGE)
    r = reader()
    with pytest.raises(StripeReadError) as info:
        r.get("/v1/customers")
    assert r.requests == 1 and info.value.status == 500


@responses.activate
def test_stripe_should_retry_true_retries_a_400() -> None:
    responses.get(
        URL, json=err(400, "invalid_request_error"), status=400, headers={"Stripe-Should-Retry": "true"}
    )
    responses.get(URL, json=PAGE)
    assert reader().get("/v1/customers") == PAGE


@responses.activate
def test_client_errors_are_not_retried_and_404_is_not_found() -> None:
    responses.get(URL, json=err(400, "invalid_request_error"), status=400)
    r = reader()
    with pytest.raises(StripeReadError):
        r.get("/v1/customers")
    assert r.requests == 1
    responses.get(f"{BASE}/v1/customers/cus_gone", json=err(404, "invalid_request_error"), status=404)
    with pytest.raises(NotFound):
        r.get("/v1/customers/cus_gone")


@responses.activate
def test_retries_are_bounded_and_the_error_names_account_and_path_not_the_key() -> None:
    for _ in range(5):
        responses.get(URL, json=err(429, "rate_limit_error"), status=429)
    r = reader(attempts=3)
    with pytest.raises(StripeReadError) as info:
        r.get("/v1/customers")
    assert r.requests == 3
    message = str(info.value)
    assert "acme" in message and "/v1/customers" in message and "429" in message
    assert KEY not in message and KEY not in repr(r.config)


@responses.activate
def test_malformed_json_is_an_error_not_a_crash() -> None:
    responses.get(URL, body="{not json", status=200)
    with pytest.raises(StripeReadError) as info:
        reader(attempts=1).get("/v1/customers")
    assert "acme" in str(info.value)


@responses.activate
def test_a_gzip_body_is_read_decoded() -> None:
    """Bodies are read from the stream (client.py says why): one Stripe sent compressed comes out as JSON."""
    responses.get(
        URL,
        body=gzip.compress(json.dumps(PAGE).encode()),
        headers={"Content-Encoding": "gzip"},
        content_type="application/json",
    )
    assert reader().get("/v1/customers") == PAGE


class _CutOnce(BaseHTTPRequestHandler):
    """Answers the first GET with half a body (the connection then drops), every later one in full."""

    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        body = json.dumps(PAGE).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if type(self).calls > 1 else body[: len(body) // 2])
        self.close_connection = type(self).calls == 1

    def log_message(self, *args: object) -> None:
        pass


def test_a_body_cut_off_halfway_is_retried_as_a_dropped_connection() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CutOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        r = StripeReader(
            StripeConfig(api_key=KEY, api_base=base, account_label="acme"),
            limiter=Unlimited(),
            retry=RetryPolicy(attempts=3, base=0.001, max_wait=0.002),
        )
        assert r.get("/v1/customers") == PAGE
        assert (r.requests, r.retries, _CutOnce.calls) == (2, 1, 2)
    finally:
        server.shutdown()
        server.server_close()


def test_proxies_come_from_the_environment_once_and_no_proxy_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared session reads the proxy settings when the reader is made, not on every request."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "stripe.test")
    assert _session("https://api.stripe.com").proxies.get("https") == "http://proxy.internal:3128"
    assert "https" not in _session("https://stripe.test").proxies
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere:1")
    session = _session("https://api.stripe.com")
    assert session.trust_env is False and session.proxies["https"] == "http://elsewhere:1"
