"""The one place that builds a `stripe.StripeClient`: pinned API version, base URL from the account, read-only.

Nothing outside `integrations/` imports `stripe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import stripe

# The API version every request asks for; stripe-python 16.1.0 pins the same (shared/stripe/BEHAVIOUR.md).
API_VERSION = "2026-10-28.endive"
DEFAULT_API_BASE = "https://api.stripe.com"


@dataclass(frozen=True)
class StripeConfig:
    """How to reach one connected account. The key is plaintext in memory only and never in a repr."""

    api_key: str = field(repr=False)
    api_base: str = DEFAULT_API_BASE
    rps: float = 20.0  # request budget per second for the account; 0 = unlimited
    redis_url: str | None = None  # share the budget across workers when set
    account_label: str = ""  # our name for the account, for errors and logs
    timeout: float = 30.0


def make_client(config: StripeConfig, max_network_retries: int = 0) -> stripe.StripeClient:
    """A StripeClient bound to the account's base URL and our pinned API version."""
    return stripe.StripeClient(
        config.api_key,
        base_addresses={"api": config.api_base},
        stripe_version=API_VERSION,
        max_network_retries=max_network_retries,
        http_client=stripe.RequestsClient(timeout=config.timeout),
    )
