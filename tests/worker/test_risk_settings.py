"""The at-risk thresholds from RETENTION_RISK_*: the definitions by default, checked values, named errors."""

from __future__ import annotations

import pytest

from metrics.at_risk import DEFAULT_THRESHOLDS, Thresholds
from worker.risk_settings import env_names, risk_thresholds
from worker.settings import ConfigError


def test_defaults_are_the_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    assert risk_thresholds() == DEFAULT_THRESHOLDS == Thresholds(0.25, 0.15, 0.10, 0.10, 90, 30, 60)


def test_each_variable_changes_its_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_RISK_SEAT_DROP", "0.2")
    monkeypatch.setenv("RETENTION_RISK_LOOKBACK_DAYS", "60")
    found = risk_thresholds()
    assert found.seat_drop == 0.2 and found.lookback_days == 60
    assert found.usage_drop == 0.25  # the others keep their defaults
    assert "RETENTION_RISK_RENEWAL_DAYS_ANNUAL" in env_names()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RETENTION_RISK_SEAT_DROP", "10%"),
        ("RETENTION_RISK_SEAT_DROP", "1.5"),
        ("RETENTION_RISK_USAGE_DROP", "0"),
        ("RETENTION_RISK_LOOKBACK_DAYS", "0"),
        ("RETENTION_RISK_RENEWAL_DAYS", "2.5"),
    ],
)
def test_a_bad_value_is_refused_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        risk_thresholds()
    assert name in str(caught.value) and repr(value) not in str(caught.value)  # named, never echoed
