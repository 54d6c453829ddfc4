"""Encryption at rest for Stripe keys and Slack webhook URLs (Fernet, from `cryptography`).

The Fernet key comes from RETENTION_SECRET_KEY or from a key file created with mode 0600 in RETENTION_HOME.
The key file is created only when the first secret is stored: reading never creates it, and a missing file
while accounts hold encrypted secrets is refused (a new key would silently split the secrets between two
keys). A key file other users may read is refused too. Plaintext secrets live only in memory, wrapped in
`Secret` so that a repr, a log line or a traceback shows a mask.
"""

from __future__ import annotations

import contextlib
import os
import stat
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


class MissingKeyError(SecretError):
    """The key file is gone while stored secrets depend on it: a new key would make them garbage."""


def key_path(settings: Settings) -> Path:
    """Where the key file lives (used when RETENTION_SECRET_KEY is not set)."""
    return Path(settings.home) / KEY_FILE


def _given_key(settings: Settings) -> bytes | None:
    given = settings.retention_secret_key.get_secret_value().strip() if settings.retention_secret_key else ""
    return given.encode() if given else None  # an empty RETENTION_SECRET_KEY= line means "not set"


def _missing(path: Path) -> MissingKeyError:
    return MissingKeyError(
        f"the secret key file {path} is missing and the stored Stripe keys and webhook URLs were encrypted"
        " with it: restore it from a backup (mode 0600) or set RETENTION_SECRET_KEY to its key; if it is lost"
        " for good, re-enter each account's key with `retention update NAME --rotate-key`"
    )


def _read_key_file(path: Path) -> bytes:
    """The key file's key, refused when other users may read it (the key opens every stored secret)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretError(
            f"the secret key file {path} may be read by other users (mode {mode:04o}): run `chmod 600 {path}`"
            " and, if someone else could have read it, rotate the keys (`retention update NAME --rotate-key`)"
        )
    return path.read_bytes().strip()


def _load_key(settings: Settings) -> bytes:
    """The Fernet key; never creates one (only `ensure_key` does, when nothing depends on an older key)."""
    given = _given_key(settings)
    if given is not None:
        return given
    path = key_path(settings)
    if not path.exists():
        raise _missing(path)
    return _read_key_file(path)


def ensure_key(settings: Settings, stored_secrets: int, replace_lost: bool = False) -> None:
    """Make sure a key exists before a new secret is encrypted, creating the key file only when that is safe.

    `stored_secrets` is how many accounts hold secrets encrypted with the current key. A missing key file
    with stored secrets means the key was lost or moved: creating a new one silently would leave the
    secrets under two keys, so it is refused unless the caller is re-entering a secret after the loss
    (`replace_lost`, from `retention update NAME --rotate-key`).
    """
    if _given_key(settings) is not None:
        return
    path = key_path(settings)
    if path.exists():
        _read_key_file(path)  # refuses a loose key file now, before anything is written
        return
    if stored_secrets and not replace_lost:
        raise _missing(path)
    _create_key_file(path)


def key_is_missing(settings: Settings) -> bool:
    """Whether no key is configured and the key file is absent (the stored secrets cannot be opened)."""
    return _given_key(settings) is None and not key_path(settings).exists()


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
            " used when it was stored; restore that key, or re-enter the account's key with"
            " `retention update NAME --rotate-key`"
        ) from None
