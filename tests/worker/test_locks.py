"""One lock per account, the same for every trigger: Redis when RETENTION_BROKER_URL is set, else the database
(a PostgreSQL advisory lock, a file beside the SQLite database). Each backend: one holder at a time, the
refusal names who holds it, a killed holder frees the account, and a lost lock is noticed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.support.nightly_helpers import add_account
from worker.locks import (
    AccountBusy,
    LockUnavailable,
    RedisLock,
    account_lock,
    acquire,
    holder_of,
    redis_key,
    uses_redis,
)
from worker.models import Account
from worker.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["sqlite", "postgres", "redis"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Engine]:
    """(name, engine): SQLite or PostgreSQL with RETENTION_BROKER_URL unset, or SQLite with Redis set."""
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)
    if request.param == "postgres":
        return "postgres", request.getfixturevalue("pg_engine")
    engine = request.getfixturevalue("sqlite_engine")
    if request.param == "redis":
        monkeypatch.setenv("RETENTION_BROKER_URL", request.getfixturevalue("redis_url"))
    return request.param, engine


@pytest.fixture
def acme(backend: tuple[str, Engine]) -> Account:
    return add_account(backend[1], get_settings(), "acme")


def test_the_lock_lives_in_redis_only_when_the_broker_url_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)
    assert not uses_redis(get_settings())  # the default URL is not "configured": a lone machine, no Redis
    monkeypatch.setenv("RETENTION_BROKER_URL", "redis://127.0.0.1:6379/3")
    assert uses_redis(get_settings())


def test_a_second_holder_is_refused_with_who_holds_it_since_when_and_where(
    backend: tuple[str, Engine], acme: Account
) -> None:
    _, engine = backend
    settings = get_settings()
    beta = add_account(engine, settings, "beta")
    first = acquire(settings, engine, acme, "sync")
    try:
        with pytest.raises(AccountBusy) as refused:
            acquire(settings, engine, acme, "nightly")
        holder = refused.value.holder
        assert holder is not None
        assert holder.purpose == "sync" and holder.pid == os.getpid()
        assert holder.host and socket.gethostname().startswith(holder.host)
        assert abs(holder.since.timestamp() - time.time()) < 30
        message = str(refused.value)
        assert message.startswith("account 'acme' is busy: a sync started ")
        assert f"(pid {os.getpid()}) is still running" in message and "UTC on " in message
        other = acquire(settings, engine, beta, "sync")  # another account is free
        other.release()
    finally:
        first.release()
    again = acquire(settings, engine, acme, "rebuild")  # released: free again
    again.release()


def test_the_lock_is_reentrant_within_one_process(backend: tuple[str, Engine], acme: Account) -> None:
    """A night holds the account and its sync step finds the lock already its own."""
    _, engine = backend
    settings = get_settings()
    with account_lock(settings, engine, acme, "nightly") as outer:
        with account_lock(settings, engine, acme, "sync") as inner:
            assert inner is outer
        assert outer.still_held()
        seen = holder_of(settings, engine, acme)  # a look from outside: the outer run holds it
        assert seen is not None and (seen.purpose, seen.pid) == ("nightly", os.getpid())
        assert _busy_in_subprocess(engine, acme)  # another process is refused
    assert not _busy_in_subprocess(engine, acme)
    assert holder_of(settings, engine, acme) is None


HOLD = """
import sys, time
from sqlmodel import Session
from worker.db import get_engine
from worker.locks import acquire
from worker.models import Account
from worker.settings import get_settings
settings = get_settings()
engine = get_engine(sys.argv[1])
with Session(engine, expire_on_commit=False) as session:
    account = session.get(Account, int(sys.argv[2]))
lock = acquire(settings, engine, account, "sync", ttl=float(sys.argv[3]))
print("held", flush=True)
time.sleep(600)
"""


def _busy_in_subprocess(engine: Engine, account: Account) -> bool:
    code = (
        "import sys\nfrom sqlmodel import Session\nfrom worker.db import get_engine\n"
        "from worker.locks import AccountBusy, acquire\nfrom worker.models import Account\n"
        "from worker.settings import get_settings\nengine = get_engine(sys.argv[1])\n"
        "with Session(engine, expire_on_commit=False) as s:\n    a = s.get(Account, int(sys.argv[2]))\n"
        "try:\n    acquire(get_settings(), engine, a, 'sync').release()\n"
        "except AccountBusy:\n    sys.exit(3)\n"
    )
    url = engine.url.render_as_string(hide_password=False)
    done = subprocess.run([sys.executable, "-c", code, url, str(account.id)], cwd=ROOT, timeout=60)
    assert done.returncode in (0, 3)
    return done.returncode == 3


@pytest.fixture
def holder_process(backend: tuple[str, Engine], acme: Account) -> Iterator[subprocess.Popen[bytes]]:
    """Another process holding acme's lock (Redis expiry 1 s, kept alive by its heartbeat)."""
    url = backend[1].url.render_as_string(hide_password=False)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, url, str(acme.id), "1.0"], cwd=ROOT, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_a_killed_holder_frees_the_account(
    backend: tuple[str, Engine], acme: Account, holder_process: subprocess.Popen[bytes]
) -> None:
    """SIGKILL (an OOM kill, a lost machine): a database lock goes with the process, Redis's after its ttl."""
    name, engine = backend
    settings = get_settings()
    time.sleep(1.5)  # past the Redis ttl: only the heartbeat keeps it
    with pytest.raises(AccountBusy) as refused:
        acquire(settings, engine, acme, "sync")
    assert refused.value.holder is not None and refused.value.holder.pid == holder_process.pid
    os.kill(holder_process.pid, signal.SIGKILL)
    holder_process.wait(10)
    deadline = time.monotonic() + 5
    while True:
        try:
            acquire(settings, engine, acme, "sync").release()
            break
        except AccountBusy:
            assert time.monotonic() < deadline, f"{name}: the dead holder's lock was never freed"
            time.sleep(0.1)
    assert time.monotonic() < deadline


def test_a_lost_lock_is_noticed(backend: tuple[str, Engine], acme: Account) -> None:
    """Expired in an outage, a terminated database connection, a removed lock file: still_held is False."""
    name, engine = backend
    settings = get_settings()
    with account_lock(settings, engine, acme, "nightly") as lock:
        assert lock.still_held()
        if name == "redis":
            redis.Redis.from_url(settings.retention_broker_url).delete(redis_key(acme))
        elif name == "postgres":
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name LIKE 'rtn nightly %'"
                    )
                )
        else:
            Path(f"{engine.url.database}.account-{acme.id}.lock").unlink()
        deadline = time.monotonic() + 5
        while lock.still_held() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lock.still_held()


def test_the_redis_heartbeat_keeps_a_long_run_locked_past_the_ttl(
    redis_url: str, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    settings = get_settings()
    acme = add_account(sqlite_engine, settings, "acme")
    with account_lock(settings, sqlite_engine, acme, "nightly", ttl=0.6) as lock:
        time.sleep(1.5)  # 2.5 TTLs: without the heartbeat the key would be gone
        assert lock.still_held()
        with pytest.raises(AccountBusy):
            acquire(settings, sqlite_engine, acme, "sync", ttl=0.6)
    assert redis.Redis.from_url(redis_url).get(redis_key(acme)) is None  # released at the end


def test_a_redelivered_task_takes_over_its_own_redis_lock_but_not_anothers(
    redis_url: str, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", redis_url)
    settings = get_settings()
    acme = add_account(sqlite_engine, settings, "acme")
    dead = acquire(settings, sqlite_engine, acme, "nightly", owner="task-1", ttl=60)
    assert isinstance(dead, RedisLock)
    dead.beat.stop.set()  # its worker died: no more heartbeat, the key stays for up to 60 s
    with pytest.raises(AccountBusy):
        acquire(settings, sqlite_engine, acme, "nightly", owner="task-2", ttl=5)
    with account_lock(settings, sqlite_engine, acme, "nightly", owner="task-1", ttl=5) as redelivered:
        assert redelivered.still_held()
        assert redis.Redis.from_url(redis_url).pttl(redis_key(acme)) <= 5000
    assert redis.Redis.from_url(redis_url).get(redis_key(acme)) is None


def test_an_unreachable_redis_is_a_clear_refusal(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_BROKER_URL", "redis://127.0.0.1:1/0")
    settings = get_settings()
    acme = add_account(sqlite_engine, settings, "acme")
    with pytest.raises(LockUnavailable, match="cannot reach Redis at RETENTION_BROKER_URL"):
        acquire(settings, sqlite_engine, acme, "sync")
