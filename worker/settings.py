"""Configuration from the environment (docs/interface.md documents every variable).

Settings are read when asked for, never frozen as default arguments, so a test or a command that changes the
environment sees the change. They are a plain pydantic model filled from the environment by
`Settings.from_environment` (names matched case-insensitively, values validated as pydantic-settings would):
importing pydantic-settings cost more than reading the variables ourselves (README: start-up time).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from integrations.rates import ECB_HISTORY_URL
from metrics.segments import SizeBands
from worker.db_target import parse_database_url


def _default_home() -> Path:
    from platformdirs import user_data_dir  # only when RETENTION_HOME is unset (start-up time: README)

    return Path(user_data_dir("stripe-retention", appauthor=False))


class Settings(BaseModel):
    """Every variable of the configuration table; names are the environment names without prefix tricks."""

    # defaults are validated too, as they were by pydantic-settings
    model_config = ConfigDict(extra="ignore", validate_default=True)

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
    retention_nightly_time_limit: int = Field(default=3 * 3600, ge=2)  # seconds, one account's night
    retention_lock_ttl: float = Field(default=60.0, gt=0)  # seconds a dead holder keeps a Redis lock
    retention_broker_wait: float = Field(default=0.0, ge=0)  # seconds worker/beat wait for the broker
    retention_max_deliveries: int = Field(default=3, ge=1)  # deliveries of one task before it is given up
    retention_size_bands: str | None = None
    retention_debug: bool = False
    stripe_api_key: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    retention_rates_url: str = ECB_HISTORY_URL  # empty: the nightly never downloads rates

    @field_validator("retention_rates_url")
    @classmethod
    def _rates_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.lower().startswith(("http://", "https://", "file://")):
            raise ValueError(
                "use an http(s) or file URL of the ECB's reference-rate history, or leave it empty"
            )
        return value

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

    @field_validator("retention_database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value is None or not value.strip():  # set but empty: the default, as for an unset variable
            return None
        try:  # parsed without SQLAlchemy: `accounts` and `status` do not import it (README: start-up time)
            backend = parse_database_url(value).backend
        except ValueError:
            raise ValueError("not a database URL: use sqlite:///PATH or postgresql://USER@HOST/DB") from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError("only sqlite:/// and postgresql:// databases are supported")
        return value

    @field_validator("retention_broker_url")
    @classmethod
    def _broker(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://")):
            raise ValueError("use a redis:// URL (the locks and the scheduler live in Redis)")
        return value

    @field_validator("retention_secret_key")
    @classmethod
    def _fernet(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return value  # unset or empty: the key file in RETENTION_HOME (worker/secrets.py)
        try:
            ok = len(base64.urlsafe_b64decode(value.get_secret_value().encode())) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            raise ValueError("not a Fernet key (32 url-safe base64-encoded bytes, 44 characters)")
        return value

    @field_validator("retention_size_bands")
    @classmethod
    def _bands(cls, value: str | None) -> str | None:
        if value and value.strip():
            try:
                SizeBands.parse(value.strip())
            except ValueError:
                raise ValueError("use increasing amounts in major units, e.g. 100,1000,10000") from None
        return value

    @classmethod
    def from_environment(cls) -> Settings:
        """The variables set in the environment, any case (`retention_home` is RETENTION_HOME); the others
        keep their defaults and stay out of `model_fields_set`."""
        found = {key.lower(): value for key, value in os.environ.items() if key.lower() in cls.model_fields}
        return cls.model_validate(found)

    @property
    def broker_configured(self) -> bool:
        """RETENTION_BROKER_URL was set (not the default): the account locks then live in Redis."""
        return "retention_broker_url" in self.model_fields_set

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
        return Settings.from_environment()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise ConfigError(f"bad configuration: {problems}") from None


def validate_environment() -> Settings:
    """Every RETENTION_* setting checked before a command does any work (exit 2 naming the variable)."""
    settings = get_settings()
    try:
        settings.home  # noqa: B018 - created (0700) here, or the error says where and why not
    except OSError as exc:
        raise ConfigError(
            f"bad configuration: RETENTION_HOME: cannot create or use {settings.retention_home} "
            f"({exc.strerror or type(exc).__name__})"
        ) from None
    from worker.risk_settings import risk_thresholds  # RETENTION_RISK_*, checked where they are read

    risk_thresholds()
    return settings
