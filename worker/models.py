"""The connected-account table: who we read from, and the secrets (encrypted) needed to do so."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field, SQLModel

from metrics.calendar import utc_now


class Account(SQLModel, table=True):
    """One connected Stripe account. Secrets are stored only as Fernet tokens (see worker/secrets.py)."""

    __tablename__ = "account"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=100)
    stripe_account: str = Field(default="", max_length=100)
    display_name: str = Field(default="", max_length=300)
    api_base: str = Field(default="https://api.stripe.com", max_length=500)
    reporting_currency: str = Field(default="usd", max_length=3)
    livemode: bool = False
    key_encrypted: str = Field(repr=False)
    key_mask: str = Field(default="", max_length=40)
    slack_webhook_encrypted: str | None = Field(default=None, repr=False)
    rps: float | None = None
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(DateTime(timezone=True)))
