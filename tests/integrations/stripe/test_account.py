"""Proving a key against the local Stripe server: one read, fallbacks for restricted keys, clear failures."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from integrations.stripe.account import (
    AccountCheckError,
    fetch_account_info,
    most_used_invoice_currency,
)
from integrations.stripe.client import StripeConfig
from worker.demo import builders
from worker.demo.stripe_server import FakeStripe, Fault, StripeWorld

KEY = "sk_test_51AcmeSecretKeyValue9876"
RESTRICTED = "rk_test_51AcmeRestrictedKey5432"


@pytest.fixture
def world() -> StripeWorld:
    return StripeWorld(builders.account("acct_1Acme", "Acme Inc.", default_currency="eur"))


@pytest.fixture
def server(world: StripeWorld) -> Iterator[FakeStripe]:
    with FakeStripe(world, api_keys=[KEY], restricted_keys=[RESTRICTED]) as fake:
        yield fake


def test_account_endpoint_names_the_account_in_one_call(server: FakeStripe) -> None:
    info = fetch_account_info(StripeConfig(api_key=KEY, api_base=server.url))
    assert (info.id, info.display_name, info.default_currency) == ("acct_1Acme", "Acme Inc.", "eur")
    assert info.checked_with == "/v1/account"
    assert info.livemode is False
    assert server.requests == [("GET", "/v1/account")]
    assert server.writes == []


def test_display_name_falls_back_to_business_profile_then_id() -> None:
    account = builders.account("acct_2", "Profile Name")
    account["settings"]["dashboard"]["display_name"] = None
    with FakeStripe(StripeWorld(account), api_keys=[KEY]) as fake:
        info = fetch_account_info(StripeConfig(api_key=KEY, api_base=fake.url))
    assert info.display_name == "Profile Name"
    account["business_profile"]["name"] = None
    with FakeStripe(StripeWorld(account), api_keys=[KEY]) as fake:
        info = fetch_account_info(StripeConfig(api_key=KEY, api_base=fake.url))
    assert (info.display_name, info.label) == ("", "acct_2")


def test_restricted_key_refused_the_account_is_proven_by_the_customer_list(server: FakeStripe) -> None:
    info = fetch_account_info(StripeConfig(api_key=RESTRICTED, api_base=server.url))
    assert info.checked_with == "/v1/customers"
    assert (info.id, info.default_currency) == ("", None)
    assert server.requests == [("GET", "/v1/account"), ("GET", "/v1/customers?limit=1")]


def test_server_without_account_endpoint_falls_back_to_customers(world: StripeWorld) -> None:
    with FakeStripe(world, api_keys=[KEY], has_account_endpoint=False) as fake:
        info = fetch_account_info(StripeConfig(api_key=KEY, api_base=fake.url))
        assert [path for _, path in fake.requests] == ["/v1/account", "/v1/customers?limit=1"]
    assert info.checked_with == "/v1/customers"


@pytest.mark.parametrize(
    "body",
    [
        "<html><body><h1>404 Not Found</h1></body></html>",  # a proxy's page
        "Not Found",  # plain text
        '{"message": "no route /v1/account"}',  # JSON that is not a Stripe error
        "",  # nothing at all
    ],
)
def test_any_404_on_the_account_endpoint_falls_back_to_customers(server: FakeStripe, body: str) -> None:
    server.inject(
        Fault(status=404, path_prefix="/v1/account", body=body, headers={"Content-Type": "text/html"})
    )
    info = fetch_account_info(StripeConfig(api_key=KEY, api_base=server.url))
    assert info.checked_with == "/v1/customers"
    assert [path for _, path in server.requests] == ["/v1/account", "/v1/customers?limit=1"]


def test_a_404_on_the_customer_list_is_still_a_failure(server: FakeStripe) -> None:
    server.inject(
        Fault(status=404, path_prefix="/v1/account", body="Not Found"),
        Fault(status=404, path_prefix="/v1/customers", body="Not Found"),
    )
    with pytest.raises(AccountCheckError) as caught:
        fetch_account_info(StripeConfig(api_key=KEY, api_base=server.url))
    assert caught.value.problem == "failed" and "404" in str(caught.value)


def test_a_non_stripe_500_on_the_account_endpoint_is_a_failure(server: FakeStripe) -> None:
    server.inject(Fault(status=500, path_prefix="/v1/account", body="<html>oops</html>"))
    with pytest.raises(AccountCheckError) as caught:
        fetch_account_info(StripeConfig(api_key=KEY, api_base=server.url))
    assert caught.value.problem == "failed" and "500" in str(caught.value)


def test_wrong_key_is_rejected_without_echoing_it(server: FakeStripe) -> None:
    wrong = "sk_test_51WrongKeyNobodyHas0000"
    with pytest.raises(AccountCheckError) as caught:
        fetch_account_info(StripeConfig(api_key=wrong, api_base=server.url, account_label="acme"))
    assert caught.value.problem == "rejected"
    assert "'acme'" in str(caught.value) and "STRIPE_API_KEY" in str(caught.value)
    # Stripe's own message quotes the key's first characters; ours quotes nothing of it.
    assert "sk_test_5" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_wrong_key_on_the_fallback_path_is_rejected_too(world: StripeWorld) -> None:
    with (
        FakeStripe(world, api_keys=[KEY], has_account_endpoint=False) as fake,
        pytest.raises(AccountCheckError) as caught,
    ):
        fetch_account_info(StripeConfig(api_key="sk_test_nope_nope_nope", api_base=fake.url))
    # the fake answers 401 before routing, so the 404 fallback is never reached with a bad key
    assert caught.value.problem == "rejected"


def test_unreachable_api_is_reported_as_such() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(AccountCheckError) as caught:
        fetch_account_info(StripeConfig(api_key=KEY, api_base=f"http://127.0.0.1:{port}", timeout=3))
    assert caught.value.problem == "unreachable"
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_a_server_that_never_answers_times_out_as_unreachable() -> None:
    with socket.socket() as sock:  # accepts connections into its backlog but never reads or answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        with pytest.raises(AccountCheckError) as caught:
            fetch_account_info(StripeConfig(api_key=KEY, api_base=f"http://127.0.0.1:{port}", timeout=0.5))
    assert caught.value.problem == "unreachable"


def test_server_error_is_a_failure_naming_the_status(server: FakeStripe) -> None:
    server.inject(Fault(status=500, path_prefix="/v1/account"))
    with pytest.raises(AccountCheckError) as caught:
        fetch_account_info(StripeConfig(api_key=KEY, api_base=server.url))
    assert caught.value.problem == "failed"
    assert "500" in str(caught.value)


def test_restricted_key_that_cannot_read_customers_is_refused(world: StripeWorld) -> None:
    with FakeStripe(world, api_keys=[KEY], restricted_keys=[RESTRICTED]) as fake:
        fake.inject(Fault(status=403, path_prefix="/v1/customers"))  # the SDK maps any 403 to PermissionError
        with pytest.raises(AccountCheckError) as caught:
            fetch_account_info(StripeConfig(api_key=RESTRICTED, api_base=fake.url))
    assert caught.value.problem == "forbidden"
    assert "/v1/customers" in str(caught.value)


def test_most_used_invoice_currency_counts_the_latest_invoices(world: StripeWorld) -> None:
    for n, currency in enumerate(["gbp", "gbp", "usd", "gbp", "usd"]):
        line = builders.line(f"il_{n}", f"in_{n}", 1000, (0, 100), currency=currency)
        world.add(builders.invoice(f"in_{n}", "cus_1", [line], created=n, currency=currency))
    with FakeStripe(world, api_keys=[KEY]) as fake:
        assert most_used_invoice_currency(StripeConfig(api_key=KEY, api_base=fake.url)) == "gbp"
        assert fake.requests == [("GET", "/v1/invoices?limit=100")]


def test_most_used_invoice_currency_is_none_without_invoices(server: FakeStripe) -> None:
    assert most_used_invoice_currency(StripeConfig(api_key=KEY, api_base=server.url)) is None


def test_live_keys_are_live_mode(world: StripeWorld) -> None:
    live = "rk_live_51AcmeLiveRestricted1111"
    with FakeStripe(world, restricted_keys=[live]) as fake:
        info = fetch_account_info(StripeConfig(api_key=live, api_base=fake.url))
    assert info.livemode is True
