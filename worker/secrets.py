"""Encryption at rest for Stripe keys and Slack webhook URLs (Fernet, from `cryptography`).

The Fernet key comes from RETENTION_SECRET_KEY or from a key file created once with mode 0600 in RETENTION_HOME.
Plaintext secrets live only in memory, wrapped in `Secret` so that a repr, a log line or a traceback shows a mask.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from worker.settings import Settings

KEY_FILE = "secret.key"


class SecretError(RuntimeError):
    """A stored secret cannot be decrypted (wrong or rotated RETENTION_SECRET_KEY)."""


class Secret:
    """A plaintext secret that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({mask(self._value)!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def mask(value: str) -> str:
    """`sk_live_...abcd`: the key's kind and last four characters, never more."""
    if not value:
        return ""
    if value.startswith(("http://", "https://")):
        return value.split("/")[2] + "/..." if "/" in value[8:] else "..."
    prefix = "_".join(value.split("_")[:2]) + "_" if value.count("_") >= 2 else ""
    return f"{prefix}...{value[-4:]}" if len(value) > 8 else "..."


def _load_key(settings: Settings) -> bytes:
    if settings.retention_secret_key is not None:
        return settings.retention_secret_key.get_secret_value().encode()
    path = Path(settings.home) / KEY_FILE
    if not path.exists():
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
    return path.read_bytes().strip()


def fernet(settings: Settings) -> Fernet:
    try:
        return Fernet(_load_key(settings))
    except ValueError as exc:
        raise SecretError("RETENTION_SECRET_KEY is not a valid Fernet key (32 url-safe base64 bytes)") from exc


def encrypt(settings: Settings, secret: Secret) -> str:
    return fernet(settings).encrypt(secret.reveal().encode()).decode()


def decrypt(settings: Settings, token: str) -> Secret:
    try:
        return Secret(fernet(settings).decrypt(token.encode()).decode())
    except InvalidToken as exc:
        raise SecretError(
            "a stored secret cannot be decrypted: RETENTION_SECRET_KEY (or the key file) differs from the one "
            "used when the account was connected"
        ) from exc
