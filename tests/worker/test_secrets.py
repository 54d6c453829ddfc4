"""Encryption at rest: round trips, masks, the key file (mode 0600, created once), refusal of a wrong key."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from worker.secrets import (
    KEY_FILE,
    MissingKeyError,
    Secret,
    SecretError,
    decrypt,
    encrypt,
    ensure_key,
    key_is_missing,
    mask,
)
from worker.settings import ConfigError, get_settings

KEY = "sk_live_51HxVerySecretValue4242"


def test_round_trip_and_the_token_is_not_the_plaintext() -> None:
    settings = get_settings()
    token = encrypt(settings, Secret(KEY))
    assert KEY not in token
    assert decrypt(settings, token) == Secret(KEY)
    assert encrypt(settings, Secret(KEY)) != token  # Fernet tokens carry a random IV


def test_secret_never_prints_itself() -> None:
    secret = Secret(KEY)
    shown_as = (repr(secret), str(secret), f"{secret}", f"{secret!s:>40}", repr([secret]), repr({1: secret}))
    for shown in shown_as:
        assert KEY not in shown
        assert "...4242" in shown
    assert secret.reveal() == KEY


@pytest.mark.parametrize(
    "value, masked",
    [
        ("sk_live_51HxVerySecretValue4242", "sk_live_...4242"),
        ("rk_test_51HxRestricted00abcd", "rk_test_...abcd"),
        ("whsec_0123456789", "...6789"),
        ("short", "..."),
        ("", ""),
        ("https://hooks.slack.com/services/T0/B0/XyzSecret", "hooks.slack.com/..."),
    ],
)
def test_mask_shows_the_kind_and_last_four_at_most(value: str, masked: str) -> None:
    assert mask(value) == masked


def test_key_file_is_created_once_with_mode_0600(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETENTION_SECRET_KEY")
    settings = get_settings()
    path = Path(settings.home) / KEY_FILE
    assert not path.exists() and key_is_missing(settings)
    ensure_key(settings, stored_secrets=0)
    token = encrypt(settings, Secret(KEY))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    Fernet(first)  # a valid key
    assert decrypt(get_settings(), token).reveal() == KEY  # read back from the same file, not regenerated
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_concurrent_first_use_agrees_on_one_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes starting at once must not each write a key: one would make the other's tokens garbage."""
    monkeypatch.delenv("RETENTION_SECRET_KEY")
    settings = get_settings()
    tokens: list[str] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        ensure_key(settings, stored_secrets=0)
        tokens.append(encrypt(settings, Secret(KEY)))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tokens) == 8
    assert {decrypt(get_settings(), t).reveal() for t in tokens} == {KEY}


def test_a_different_key_cannot_decrypt_and_says_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    token = encrypt(get_settings(), Secret(KEY))
    monkeypatch.setenv("RETENTION_SECRET_KEY", Fernet.generate_key().decode())
    with pytest.raises(SecretError, match="RETENTION_SECRET_KEY") as caught:
        decrypt(get_settings(), token)
    assert KEY not in str(caught.value)


def test_an_invalid_secret_key_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_SECRET_KEY", "not-a-fernet-key-but-secret")
    with pytest.raises(ConfigError) as caught:  # checked with every setting, before any command works
        encrypt(get_settings(), Secret(KEY))
    assert "not-a-fernet-key-but-secret" not in str(caught.value)


def test_an_empty_secret_key_variable_means_the_key_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_SECRET_KEY", "")
    settings = get_settings()
    ensure_key(settings, stored_secrets=0)
    assert decrypt(settings, encrypt(settings, Secret(KEY))).reveal() == KEY
    assert (Path(settings.home) / KEY_FILE).exists()


def test_reading_never_creates_a_key_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETENTION_SECRET_KEY")
    settings = get_settings()
    token = Fernet(Fernet.generate_key()).encrypt(KEY.encode()).decode()  # a secret stored under a lost key
    for attempt in (lambda: decrypt(settings, token), lambda: encrypt(settings, Secret(KEY))):
        with pytest.raises(MissingKeyError) as caught:
            attempt()
        message = str(caught.value)
        assert str(Path(settings.home) / KEY_FILE) in message and "restore it" in message
        assert "--rotate-key" in message and "\n" not in message
    assert not (Path(settings.home) / KEY_FILE).exists()


def test_no_new_key_while_secrets_depend_on_the_lost_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETENTION_SECRET_KEY")
    settings = get_settings()
    with pytest.raises(MissingKeyError):
        ensure_key(settings, stored_secrets=2)
    assert key_is_missing(settings)
    ensure_key(settings, stored_secrets=2, replace_lost=True)  # `update --rotate-key` after the loss
    assert not key_is_missing(settings)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_may_read_is_refused(monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    monkeypatch.delenv("RETENTION_SECRET_KEY")
    settings = get_settings()
    ensure_key(settings, stored_secrets=0)
    token = encrypt(settings, Secret(KEY))
    path = Path(settings.home) / KEY_FILE
    path.chmod(mode)
    with pytest.raises(SecretError, match=f"mode {mode:04o}.*chmod 600") as caught:
        decrypt(settings, token)
    assert str(path) in str(caught.value)
    with pytest.raises(SecretError):
        ensure_key(settings, stored_secrets=1)  # nor is a new secret stored with it
    path.chmod(0o600)
    assert decrypt(settings, token).reveal() == KEY
