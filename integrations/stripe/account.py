"""Proving a key before we store it: one read-only call that says whose account it is.

`GET /v1/account` names the account. A restricted key (`rk_...`) may be refused it (403 `permission_error`)
and some Stripe-compatible servers have no such endpoint (404, whatever the body); a read of
`GET /v1/customers?limit=1` then proves the key instead, because the customer list is the first thing a sync
needs anyway. Errors are matched on HTTP status and Stripe's `error.type`, never on message text, and our
messages never quote Stripe's: an authentication error's message echoes part of the key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import stripe

from integrations.stripe.client import StripeConfig, make_client

ACCOUNT_PATH = "/v1/account"
CUSTOMERS_PATH = "/v1/customers"
INVOICES_PATH = "/v1/invoices"

Problem = Literal["rejected", "unreachable", "forbidden", "missing", "failed"]


class AccountCheckError(Exception):
    """The key could not be proven. `problem` says why; the message is one line saying what to do."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class AccountInfo:
    """What the validation call told us. A restricted key may leave the id and name unknown ("")."""

    id: str
    display_name: str
    default_currency: str | None
    livemode: bool
    checked_with: str  # the path that proved the key

    @property
    def label(self) -> str:
        """The display name, else the id, else a plain word (restricted keys see neither)."""
        return self.display_name or self.id or "(account name not readable with this key)"


def fetch_account_info(config: StripeConfig) -> AccountInfo:
    """Prove the key with one read; the customer list stands in where the account itself cannot be read.

    A 404 on `/v1/account` means the server has no such endpoint, whatever its body says: a proxy or a
    Stripe-compatible server may answer HTML, plain text or JSON that is not a Stripe error, which the SDK
    raises as an `APIError` rather than an `InvalidRequestError`. Only the status decides.
    """
    client = make_client(config)
    try:
        body = _get(client, config, ACCOUNT_PATH)
    except stripe.PermissionError:
        return _via_customers(client, config)
    except stripe.StripeError as exc:
        if exc.http_status == 404:
            return _via_customers(client, config)
        raise _failed(config, exc) from None
    return AccountInfo(
        id=str(body.get("id") or ""),
        display_name=_display_name(body),
        default_currency=_currency(body.get("default_currency")),
        livemode=_livemode(config, body),
        checked_with=ACCOUNT_PATH,
    )


def knows_customer(config: StripeConfig, customer_id: str) -> bool:
    """Whether the key's account has this customer (a deleted one still answers): proves that a new key
    opens the same account when neither key may read `/v1/account`."""
    client = make_client(config)
    try:
        _get(client, config, f"{CUSTOMERS_PATH}/{customer_id}")
    except AccountCheckError as exc:
        if exc.problem == "missing":
            return False
        raise
    return True


def most_used_invoice_currency(config: StripeConfig) -> str | None:
    """The currency of most of the latest 100 invoices; None if there are none or they are unreadable."""
    client = make_client(config)
    try:
        body = _get(client, config, INVOICES_PATH, limit=100)
    except AccountCheckError:
        return None
    counts = Counter(c for inv in body.get("data") or [] if (c := _currency(inv.get("currency"))))
    if not counts:
        return None
    # Ties go to the alphabetically first currency so the choice does not depend on Stripe's page order.
    best = max(counts.values())
    return min(c for c, n in counts.items() if n == best)


def _via_customers(client: stripe.StripeClient, config: StripeConfig) -> AccountInfo:
    _get(client, config, CUSTOMERS_PATH, limit=1)
    return AccountInfo(
        id="",
        display_name="",
        default_currency=None,
        livemode=_livemode(config, {}),
        checked_with=CUSTOMERS_PATH,
    )


def _get(client: stripe.StripeClient, config: StripeConfig, path: str, **params: Any) -> dict[str, Any]:
    """One GET; authentication and connection failures become AccountCheckError, other Stripe errors pass."""
    where = _where(config)
    try:
        response = client.raw_request("get", path, **params)
    except stripe.AuthenticationError:
        raise AccountCheckError(
            "rejected",
            f"Stripe rejected the API key{where}: check STRIPE_API_KEY (a secret or restricted "
            "key of the account) and try again",
        ) from None
    except stripe.APIConnectionError:
        raise AccountCheckError(
            "unreachable",
            f"cannot reach the Stripe API at {config.api_base}{where}: check the network or "
            "--api-base and try again",
        ) from None
    except stripe.PermissionError:
        if path == ACCOUNT_PATH:
            raise
        raise AccountCheckError(
            "forbidden",
            f"the key may not read {path}{where}: give the restricted key read access to "
            "customers, products, prices, subscriptions, invoices, credit notes and events",
        ) from None
    except stripe.StripeError as exc:
        if path == ACCOUNT_PATH and exc.http_status == 404:
            raise  # the caller falls back to the customer list
        if isinstance(exc, stripe.InvalidRequestError) and exc.http_status == 404 and path != CUSTOMERS_PATH:
            raise AccountCheckError("missing", f"{path} does not exist{where}") from None
        raise _failed(config, exc) from None
    data = response.data
    return data if isinstance(data, dict) else {}


def _failed(config: StripeConfig, exc: stripe.StripeError) -> AccountCheckError:
    status = exc.http_status if exc.http_status is not None else "no status"
    kind = type(exc).__name__
    return AccountCheckError(
        "failed", f"Stripe answered {status} ({kind}) while checking the key{_where(config)}: try again later"
    )


def _where(config: StripeConfig) -> str:
    return f" for account {config.account_label!r}" if config.account_label else ""


def _display_name(body: dict[str, Any]) -> str:
    dashboard = (body.get("settings") or {}).get("dashboard") or {}
    profile = body.get("business_profile") or {}
    return str(dashboard.get("display_name") or profile.get("name") or "")


def _currency(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and len(value) == 3 and value.isalpha() else None


def _livemode(config: StripeConfig, body: dict[str, Any]) -> bool:
    """Stripe says so on some objects; otherwise the key's own prefix (`sk_live_`, `rk_live_`) does."""
    if isinstance(body.get("livemode"), bool):
        return bool(body["livemode"])
    return "_live_" in config.api_key[:10]
