"""How to reach one connected account: kept apart from the client so that reading or listing accounts does not
import the Stripe SDK (commands like `retention accounts` start faster; README: start-up time)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
