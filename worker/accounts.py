"""Connected accounts as the rest of the application sees them: configuration with the key decrypted."""

from __future__ import annotations

from integrations.stripe.client import StripeConfig
from worker.models import Account
from worker.secrets import decrypt
from worker.settings import Settings


def stripe_config(settings: Settings, account: Account, redis_url: str | None = None) -> StripeConfig:
    """The account's Stripe configuration; the per-account --rps wins over RETENTION_STRIPE_RPS."""
    return StripeConfig(
        api_key=decrypt(settings, account.key_encrypted).reveal(),
        api_base=account.api_base,
        rps=account.rps if account.rps is not None else settings.retention_stripe_rps,
        redis_url=redis_url,
        account_label=account.name,
    )
