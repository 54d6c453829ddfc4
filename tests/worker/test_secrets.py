"""Encryption at rest: round trips, masks, the key file (mode 0600, created once), refusal of a wrong key."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from worker.secrets import KEY_FILE, Secret, SecretError, decrypt, encrypt, mask
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
    assert not path.exists()
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
    assert decrypt(settings, encrypt(settings, Secret(KEY))).reveal() == KEY
    assert (Path(settings.home) / KEY_FILE).exists()
