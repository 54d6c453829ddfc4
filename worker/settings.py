"""Configuration from the environment (docs/interface.md documents every variable).

Settings are read when asked for, never frozen as default arguments, so a test or a command that changes the
environment sees the change.
"""

from __future__ import annotations

import os
import re
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
    stripe_api_key: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None

    @field_validator("retention_nightly_at")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip())
        if match is None:
            raise ValueError("use HH:MM on a 24-hour clock, e.g. 02:00")
        return f"{int(match.group(1)):02d}:{match.group(2)}"

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
        """RETENTION_HOME, created (or tightened) to mode 0700: it holds the key file, database, reports."""
        private_dir(self.retention_home)
        return self.retention_home

    @property
    def database_url(self) -> str:
        return self.retention_database_url or f"sqlite:///{self.home / 'retention.db'}"


def private_dir(path: Path) -> None:
    """Create `path` with mode 0700, or take group and other access away from an existing one we own.

    An older install (or `mkdir` with the usual umask) left the home 0755: billing data listable by every
    local user. A folder someone else owns is left as it is (we may not change it); the files in it are
    still created 0600.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        path.chmod(0o700)


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
