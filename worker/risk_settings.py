"""The at-risk thresholds of this installation: defaults from the definitions, RETENTION_RISK_* to change
them.

Kept apart from worker/settings.py so that the thresholds are read in one place with their own checks (a
share must lie in (0, 1), days must be whole and positive); README lists every variable.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

from metrics.at_risk import DEFAULT_THRESHOLDS, Thresholds
from worker.settings import ConfigError

PREFIX = "RETENTION_RISK_"


def _env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def env_names() -> list[str]:
    """Every variable a threshold is read from, e.g. RETENTION_RISK_SEAT_DROP."""
    return [_env_name(f.name) for f in fields(Thresholds)]


def _parse(name: str, raw: str, default: float | int) -> float | int:
    try:
        value: float | int = int(raw) if isinstance(default, int) else float(raw)
    except ValueError:
        kind = "a whole number of days" if isinstance(default, int) else "a share such as 0.25"
        raise ConfigError(f"bad configuration: {name} must be {kind}") from None
    if isinstance(default, int) and value <= 0:
        raise ConfigError(f"bad configuration: {name} must be a positive number of days")
    if isinstance(default, float) and not 0 < value < 1:
        raise ConfigError(f"bad configuration: {name} must be a share between 0 and 1 (e.g. 0.25)")
    return value


def risk_thresholds() -> Thresholds:
    """The thresholds from the environment, each variable left unset keeping its default."""
    values: dict[str, Any] = {}
    for f in fields(Thresholds):
        name = _env_name(f.name)
        raw = os.environ.get(name)
        if raw is not None and raw.strip():
            values[f.name] = _parse(name, raw.strip(), getattr(DEFAULT_THRESHOLDS, f.name))
    return Thresholds(**values)
