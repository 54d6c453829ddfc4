"""Configuration from the environment (docs/interface.md documents every variable).

Settings are read when asked for, never frozen as default arguments, so a test or a command that changes the
environment sees the change.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(user_data_dir("stripe-retention", appauthor=False))


class Settings(BaseSettings):
    """Every variable of the configuration table; names are the environment names without prefix tricks."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    retention_home: Path = Field(default_factory=_default_home)
    retention_database_url: str | None = None
    retention_broker_url: str = "redis://127.0.0.1:6379/0"
    retention_secret_key: SecretStr | None = None
    retention_stripe_rps: float = Field(default=20.0, ge=0)
    retention_nightly_at: str = "02:00"
    retention_timezone: str = "UTC"
    # minutes between same-day watch ticks (fractions allowed); 0 = off
    retention_watch_every: float = Field(default=15, ge=0, le=1440)
    # MRR (major units of the reporting currency) from which an urgent alert goes out at once; None: the
    # account's top fifth by MRR
    retention_urgent_mrr: Decimal | None = Field(default=None, ge=0)
    stripe_api_key: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None

    @field_validator("retention_nightly_at")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
        if match is None:
            raise ValueError("use HH:MM on a 24-hour clock, e.g. 02:00")
        return f"{int(match.group(1)):02d}:{match.group(2)}"

    @field_validator("retention_urgent_mrr", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        """`RETENTION_URGENT_MRR=` (as an env file leaves it) means the default: the top fifth by MRR."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("retention_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("use an IANA time zone name, e.g. Europe/Berlin") from None
        return value.strip()

    @property
    def nightly_hour_minute(self) -> tuple[int, int]:
        """RETENTION_NIGHTLY_AT as numbers, for the beat schedule."""
        hour, minute = self.retention_nightly_at.split(":")
        return int(hour), int(minute)

    @property
    def home(self) -> Path:
        self.retention_home.mkdir(parents=True, exist_ok=True, mode=0o700)  # it holds the key file and the DB
        return self.retention_home

    @property
    def database_url(self) -> str:
        return self.retention_database_url or f"sqlite:///{self.home / 'retention.db'}"


class ConfigError(ValueError):
    """An environment variable has a value we cannot use; the message names it and never echoes the value."""


def get_settings() -> Settings:
    """A fresh read of the environment; cheap enough to call per command."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"bad configuration: {problems}") from None
