"""Configuration from the environment, as the table in docs/interface.md and the README says."""

from __future__ import annotations

import stat
from decimal import Decimal
from pathlib import Path

import pytest

from worker.settings import ConfigError, Settings, get_settings

VARIABLES = (
    "RETENTION_HOME",
    "RETENTION_DATABASE_URL",
    "RETENTION_BROKER_URL",
    "RETENTION_SECRET_KEY",
    "RETENTION_STRIPE_RPS",
    "RETENTION_NIGHTLY_AT",
    "RETENTION_TIMEZONE",
    "RETENTION_WATCH_EVERY",
    "RETENTION_URGENT_MRR",
    "RETENTION_NIGHTLY_TIME_LIMIT",
    "RETENTION_LOCK_TTL",
    "RETENTION_BROKER_WAIT",
    "RETENTION_MAX_DELIVERIES",
    "RETENTION_SIZE_BANDS",
    "RETENTION_DEBUG",
    "RETENTION_RATES_URL",
    "STRIPE_API_KEY",
    "SLACK_WEBHOOK_URL",
)


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    settings = get_settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'home' / 'retention.db'}"
    assert (tmp_path / "home").is_dir()  # created on first use, private: it holds the key file
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700
    assert settings.retention_broker_url == "redis://127.0.0.1:6379/0"
    assert settings.retention_stripe_rps == 20.0
    assert (settings.retention_nightly_at, settings.retention_timezone) == ("02:00", "UTC")
    assert settings.nightly_hour_minute == (2, 0)
    assert settings.retention_secret_key is None and settings.stripe_api_key is None
    assert settings.slack_webhook_url is None
    assert (settings.retention_watch_every, settings.retention_urgent_mrr) == (15, None)
    assert settings.retention_rates_url == "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.zip"


def test_every_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "RETENTION_HOME": str(tmp_path),
        "RETENTION_DATABASE_URL": "postgresql://alice@db/retention",
        "RETENTION_BROKER_URL": "redis://cache:6379/3",
        "RETENTION_SECRET_KEY": "k" * 43 + "=",  # 32 bytes in url-safe base64: a Fernet key
        "RETENTION_STRIPE_RPS": "0",
        "RETENTION_NIGHTLY_AT": "3:30",
        "RETENTION_TIMEZONE": "Europe/Berlin",
        "RETENTION_WATCH_EVERY": "0",
        "RETENTION_URGENT_MRR": "5000.50",
        "RETENTION_RATES_URL": "https://mirror.example/eurofxref-hist.zip",
        "STRIPE_API_KEY": "sk_test_fromenv",
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/x",
    }
    for var, value in values.items():
        monkeypatch.setenv(var, value)
    s = get_settings()
    assert s.home == tmp_path
    assert s.database_url == "postgresql://alice@db/retention"
    assert s.retention_broker_url == "redis://cache:6379/3"
    assert s.retention_secret_key is not None and s.retention_secret_key.get_secret_value() == "k" * 43 + "="
    assert s.retention_stripe_rps == 0.0  # 0 = unlimited
    assert (s.retention_nightly_at, s.nightly_hour_minute) == ("03:30", (3, 30))
    assert s.retention_timezone == "Europe/Berlin"
    assert s.retention_rates_url == "https://mirror.example/eurofxref-hist.zip"
    assert s.stripe_api_key is not None and s.stripe_api_key.get_secret_value() == "sk_test_fromenv"
    assert s.slack_webhook_url is not None
    assert s.retention_watch_every == 0  # the watch is off
    assert s.retention_urgent_mrr == Decimal("5000.50")
    monkeypatch.setenv("RETENTION_URGENT_MRR", "")  # as an env file leaves it: the default
    assert get_settings().retention_urgent_mrr is None


def test_secrets_in_settings_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_printme_never")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/never/printed")
    settings = get_settings()
    assert "sk_test_printme_never" not in repr(settings) and "never/printed" not in repr(settings)


def test_the_environment_is_read_when_asked_not_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_STRIPE_RPS", "7")
    assert get_settings().retention_stripe_rps == 7.0
    monkeypatch.setenv("RETENTION_STRIPE_RPS", "9")
    assert get_settings().retention_stripe_rps == 9.0


@pytest.mark.parametrize(
    "var, value",
    [
        ("RETENTION_STRIPE_RPS", "-1"),
        ("RETENTION_STRIPE_RPS", "fast"),
        ("RETENTION_NIGHTLY_AT", "25:00"),
        ("RETENTION_NIGHTLY_AT", "2am"),
        ("RETENTION_TIMEZONE", "Mars/Olympus"),
        ("RETENTION_WATCH_EVERY", "-5"),
        ("RETENTION_WATCH_EVERY", "often"),
        ("RETENTION_URGENT_MRR", "-1"),
        ("RETENTION_URGENT_MRR", "lots"),
        ("RETENTION_RATES_URL", "www.ecb.europa.eu/rates.zip"),
    ],
)
def test_bad_values_are_one_clear_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as caught:
        get_settings()
    message = str(caught.value)
    assert var in message and "\n" not in message


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert set(VARIABLES) == {name.upper() for name in Settings.model_fields}
    for var in VARIABLES:
        assert f"`{var}`" in readme


def test_the_home_is_created_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "new" / "home"
    monkeypatch.setenv("RETENTION_HOME", str(home))
    assert get_settings().home == home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_an_existing_open_home_is_tightened(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An older install left the home 0755: billing data listable by every local user."""
    home = tmp_path / "old-home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    monkeypatch.setenv("RETENTION_HOME", str(home))
    assert get_settings().home == home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_an_empty_database_url_means_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`RETENTION_DATABASE_URL=` (as the demo's closing hint writes it) means the home's SQLite file."""
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path))
    monkeypatch.setenv("RETENTION_DATABASE_URL", "")
    assert get_settings().database_url == f"sqlite:///{tmp_path / 'retention.db'}"
