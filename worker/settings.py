"""Configuration from the environment (shared/CLI.md is the contract for every variable).

Settings are read when asked for, never frozen as default arguments, so a test or a command that changes the
environment sees the change.
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field, SecretStr
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
    retention_stripe_rps: float = 20.0
    retention_nightly_at: str = "02:00"
    retention_timezone: str = "UTC"
    stripe_api_key: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None

    @property
    def home(self) -> Path:
        self.retention_home.mkdir(parents=True, exist_ok=True)
        return self.retention_home

    @property
    def database_url(self) -> str:
        return self.retention_database_url or f"sqlite:///{self.home / 'retention.db'}"


def get_settings() -> Settings:
    """A fresh read of the environment; cheap enough to call per command."""
    return Settings()
