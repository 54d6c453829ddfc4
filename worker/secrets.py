"""Encryption at rest for Stripe keys and Slack webhook URLs (Fernet, from `cryptography`).

The Fernet key comes from RETENTION_SECRET_KEY or from a key file created once with mode 0600 in
RETENTION_HOME. Plaintext secrets live only in memory, wrapped in `Secret` so that a repr, a log line or a
traceback shows a mask.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
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
    given = settings.retention_secret_key.get_secret_value().strip() if settings.retention_secret_key else ""
    if given:  # an empty RETENTION_SECRET_KEY= line in an env file means "not set"
        return given.encode()
    path = Path(settings.home) / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    return path.read_bytes().strip()


def _create_key_file(path: Path) -> None:
    """Write a new key readable by its owner only, atomically: a second process racing us keeps the first key.

    The key is written to a private temporary file and linked into place, so no reader ever sees an empty file
    and an existing key is never replaced (that would make every stored secret undecryptable).
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600, a name nobody shares
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process created the key first: use theirs
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def fernet(settings: Settings) -> Fernet:
    try:
        return Fernet(_load_key(settings))
    except ValueError:
        raise SecretError("RETENTION_SECRET_KEY is not a Fernet key (32 url-safe base64 bytes)") from None


def encrypt(settings: Settings, secret: Secret) -> str:
    return fernet(settings).encrypt(secret.reveal().encode()).decode()


def decrypt(settings: Settings, token: str) -> Secret:
    try:
        return Secret(fernet(settings).decrypt(token.encode()).decode())
    except InvalidToken:
        raise SecretError(
            "a stored secret cannot be decrypted: RETENTION_SECRET_KEY (or the key file) differs from the one"
            " used when the account was connected"
        ) from None
