"""One run per account at a time: `sync`, `rebuild`, `nightly` and the watch tick share one lock.

Two runs of one account at once read Stripe twice and race on the same rows (seen: a PostgreSQL deadlock
between two syncs, a unique violation between a command-line night and a worker's night). The lock is the same
whoever runs: it lives in Redis when a broker is configured, else in the database, and every process reading
the same configuration picks the same place.

"A broker is configured" means RETENTION_BROKER_URL is set (to a redis:// URL) in the environment. It is not
"this process is a worker": a worker and a command started beside it with the same environment must meet on
the same lock, and a command does not know whether workers exist. A deployment sets the variable for every
process (deploy/.env.example); a single machine without workers leaves it out and locks in the database.

- Redis: a key holding who holds it, with a short expiry (RETENTION_LOCK_TTL) that a heartbeat thread keeps
  extending while the run lives. A holder killed outright (SIGKILL, a lost machine) frees the account within
  the expiry; a redelivered Celery task finds its own task id there and takes the lock over at once.
- PostgreSQL: a session advisory lock on a connection held for the run (released by the server the moment
  the holder's connection closes; TCP keepalives on that connection find a lost machine within a minute).
  Who holds it is written in that connection's application_name, which other sessions read.
- SQLite: an OS file lock beside the database file, holder written inside; the kernel drops it when the
  holder dies, so the next run proceeds at once.

A run that finds the lock held raises `AccountBusy` naming the holder (what, since when, host and pid); a
command turns it into one line and exit 2, a queued task retries later. `still_held()` lets a chain check,
before each step, that nobody took the account over meanwhile (an expiry during a Redis outage, a
terminated database connection): a lost lock stops the chain rather than running beside the next holder.

Within one process the lock is re-entrant: a nightly chain holds it and its sync step finds it held here.
"""

from __future__ import annotations

import contextvars
import fcntl
import functools
import json
import logging
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

import redis
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from worker import errors
from worker.errors import SafeMessage, Transient
from worker.models import Account
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Two-int PostgreSQL advisory keys: (this namespace, account id); the migration lock uses the one-int form.
PG_NAMESPACE = 0x52544F  # "RTO"
_LABEL = "rtn"  # application_name prefix of a lock connection: "rtn <purpose> <since epoch> <pid> <host>"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Holder:
    """Who holds an account's lock: enough for the refusal line and to recognize a redelivered task."""

    purpose: str
    host: str
    pid: int
    since: datetime
    owner: str | None = None  # the Celery task id, None for a command

    @classmethod
    def here(cls, purpose: str, owner: str | None = None) -> Holder:
        return cls(
            purpose, socket.gethostname(), os.getpid(), datetime.now(UTC).replace(microsecond=0), owner
        )

    def describe(self) -> str:
        when = self.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"a {self.purpose} started {when} on {self.host} (pid {self.pid})"

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "since": self.since.isoformat()})

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> Holder | None:
        try:
            data = json.loads(raw or "")
            return cls(
                str(data["purpose"]),
                str(data["host"]),
                int(data["pid"]),
                datetime.fromisoformat(data["since"]),
                data.get("owner"),
            )
        except (ValueError, KeyError, TypeError):
            return None


class AccountBusy(SafeMessage):
    """Another run holds the account's lock."""

    def __init__(self, account: str, holder: Holder | None, purpose: str) -> None:
        self.account = account
        self.holder = holder
        self.purpose = purpose
        who = holder.describe() if holder else "another run"
        super().__init__(
            f"account {account!r} is busy: {who} is still running; this {purpose} did nothing, "
            f"run it again when that one has finished"
        )

    def __reduce__(self) -> tuple[type[AccountBusy], tuple[str, Holder | None, str]]:
        """Celery pickles the exception of a retry: rebuilt from its parts, not from its message."""
        return (AccountBusy, (self.account, self.holder, self.purpose))


class LockUnavailable(Transient):
    """The lock store (Redis or the database) could not be reached: nothing ran."""


class LockLost(SafeMessage):
    """The lock expired or was taken over during the run."""


class HeldLock(ABC):
    """A lock this process holds; released by `account_lock` at the end of its block."""

    def __init__(self, account: Account, holder: Holder) -> None:
        self.account = account
        self.holder = holder

    @abstractmethod
    def still_held(self) -> bool:
        """False once the lock expired or another run took it: stop before the next step."""

    @abstractmethod
    def release(self) -> None: ...


_HELD: contextvars.ContextVar[dict[tuple[str, int], HeldLock]] = contextvars.ContextVar("retention_locks")


def uses_redis(settings: Settings) -> bool:
    """The lock lives in Redis when RETENTION_BROKER_URL is set to a Redis URL (see the module docstring)."""
    return settings.broker_configured and settings.retention_broker_url.startswith(("redis://", "rediss://"))


@contextmanager
def account_lock(
    settings: Settings,
    engine: Engine,
    account: Account,
    purpose: str,
    *,
    owner: str | None = None,
    ttl: float | None = None,
) -> Iterator[HeldLock]:
    """Holds the account's lock for the block; raises AccountBusy (who holds it) or LockUnavailable.

    Re-entrant within a process: a block inside another block for the same account yields the outer lock.
    """
    assert account.id is not None
    key = (engine.url.render_as_string(hide_password=True), account.id)
    held = _HELD.get({})
    if key in held:
        yield held[key]
        return
    lock = acquire(settings, engine, account, purpose, owner=owner, ttl=ttl)
    token = _HELD.set({**held, key: lock})
    try:
        yield lock
    finally:
        _HELD.reset(token)
        lock.release()


def exclusive(purpose: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Runs `fn(engine, ..., account, ...)` under the account's lock, and marks a failure with its place.

    For the functions every trigger goes through (run_sync, rebuild_account), so that a command, a worker
    and the demo all take the lock without each remembering to.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            engine = args[0]
            assert isinstance(engine, Engine)
            values = (*args, *kwargs.values())
            account = next(a for a in values if isinstance(a, Account))
            settings = next((s for s in values if isinstance(s, Settings)), None) or get_settings()
            with account_lock(settings, engine, account, purpose):
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    errors.mark(exc, account.name, purpose)
                    raise

        return run

    return decorate


def acquire(
    settings: Settings,
    engine: Engine,
    account: Account,
    purpose: str,
    *,
    owner: str | None = None,
    ttl: float | None = None,
) -> HeldLock:
    """Takes the account's lock (not re-entrant; the caller releases it): prefer `account_lock`."""
    holder = Holder.here(purpose, owner)
    ttl = ttl or settings.retention_lock_ttl
    if uses_redis(settings):
        return RedisLock.acquire(settings.retention_broker_url, account, holder, ttl)
    if engine.dialect.name == "postgresql":
        return PgLock.acquire(engine, account, holder)
    return FileLock.acquire(_lock_path(settings, engine, account), account, holder)


# --- Redis -------------------------------------------------------------------------------------------------

_EXTEND = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_REPLACE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) "
    "end return false"
)


def redis_key(account: Account) -> str:
    """Id and name: one Redis may serve several databases (the demo's own, a staging one)."""
    return f"retention:lock:account:{account.id}:{account.name}"


@dataclass
class _Beat:
    last_ok: float = field(default_factory=time.monotonic)
    lost: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


class RedisLock(HeldLock):
    """A Redis key with an expiry, extended every ttl/3 by a heartbeat thread while the run lives."""

    def __init__(
        self, client: redis.Redis, key: str, token: str, ttl: float, account: Account, holder: Holder
    ) -> None:
        super().__init__(account, holder)
        self.client, self.key, self.token, self.ttl = client, key, token, ttl
        self.beat = _Beat()
        self.thread = threading.Thread(target=self._heartbeat, name="account-lock-heartbeat", daemon=True)
        self.thread.start()

    @classmethod
    def acquire(cls, url: str, account: Account, holder: Holder, ttl: float) -> RedisLock:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        key, token, ms = redis_key(account), holder.to_json(), int(ttl * 1000)
        try:
            if not client.set(key, token, nx=True, px=ms):
                current = client.get(key)
                found = Holder.from_json(current)
                mine = found is not None and holder.owner is not None and found.owner == holder.owner
                if not mine or not client.eval(_REPLACE, 1, key, current or b"", token, ms):
                    client.close()
                    raise AccountBusy(account.name, found, holder.purpose)
                log.warning("took over the account lock left by an earlier delivery of this task")
        except redis.exceptions.RedisError as exc:
            client.close()
            raise LockUnavailable(
                f"cannot reach Redis at RETENTION_BROKER_URL for the lock of account {account.name!r} "
                f"({type(exc).__name__}); start Redis or unset RETENTION_BROKER_URL on a single machine"
            ) from exc
        return cls(client, key, token, ttl, account, holder)

    def _heartbeat(self) -> None:
        while not self.beat.stop.wait(self.ttl / 3):
            try:
                if self.client.eval(_EXTEND, 1, self.key, self.token, int(self.ttl * 1000)):
                    self.beat.last_ok = time.monotonic()
                    continue
                self.beat.lost = True
                log.error("the account lock expired or was taken over", extra={"lock": self.key})
                return
            except redis.exceptions.RedisError as exc:  # a blip: the lock lives on until its expiry
                log.warning("could not extend the account lock (%s)", type(exc).__name__)

    def still_held(self) -> bool:
        if self.beat.lost:
            return False
        try:
            return bool(self.client.get(self.key) == self.token.encode())
        except redis.exceptions.RedisError:
            return time.monotonic() - self.beat.last_ok < self.ttl

    def release(self) -> None:
        self.beat.stop.set()
        self.thread.join()
        try:
            if not self.client.eval(_RELEASE, 1, self.key, self.token):
                log.warning("the account lock had expired before release", extra={"lock": self.key})
        except redis.exceptions.RedisError as exc:  # it expires by itself
            log.warning("could not release the account lock (%s)", type(exc).__name__)
        self.client.close()


# --- PostgreSQL --------------------------------------------------------------------------------------------


def _label(holder: Holder) -> str:
    return f"{_LABEL} {holder.purpose} {int(holder.since.timestamp())} {holder.pid} {holder.host}"[:63]


def _from_label(label: str | None) -> Holder | None:
    parts = (label or "").split(" ", 4)
    if len(parts) != 5 or parts[0] != _LABEL:
        return None
    try:
        return Holder(parts[1], parts[4], int(parts[3]), datetime.fromtimestamp(int(parts[2]), UTC))
    except ValueError:
        return None


_HOLDER_SQL = text(
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.classid = :ns AND l.objid = :id AND l.objsubid = 2 AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


class PgLock(HeldLock):
    """A session advisory lock on a connection of its own, closed (never pooled again) at release."""

    _HELD_SQL = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns AND objid = :id "
        "AND objsubid = 2 AND granted AND pid = pg_backend_pid()"
    )

    def __init__(self, conn: Connection, account: Account, holder: Holder) -> None:
        super().__init__(account, holder)
        self.conn = conn

    @classmethod
    def acquire(cls, engine: Engine, account: Account, holder: Holder) -> PgLock:
        try:
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception as exc:
            raise LockUnavailable(
                f"cannot open the database for the lock of account {account.name!r} ({type(exc).__name__})"
            ) from exc
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:ns, :id)"), {"ns": PG_NAMESPACE, "id": account.id}
            ).scalar()
            if not got:
                found = _from_label(
                    conn.execute(_HOLDER_SQL, {"ns": PG_NAMESPACE, "id": account.id}).scalar()
                )
                raise AccountBusy(account.name, found, holder.purpose)
            # who holds it, for the refusal line; keepalives so a lost machine's lock goes within a minute
            conn.execute(
                text(
                    "SELECT set_config('application_name', :label, false), "
                    "set_config('tcp_keepalives_idle', '20', false), "
                    "set_config('tcp_keepalives_interval', '10', false), "
                    "set_config('tcp_keepalives_count', '3', false)"
                ),
                {"label": _label(holder)},
            )
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        return cls(conn, account, holder)

    def still_held(self) -> bool:
        try:
            count = self.conn.execute(self._HELD_SQL, {"ns": PG_NAMESPACE, "id": self.account.id}).scalar()
        except Exception:  # the connection is gone, and the server dropped the lock with it
            return False
        return bool(count)

    def release(self) -> None:
        # Unlocked explicitly first: a closed session frees its locks only once the server has noticed the
        # disconnect, and a run started right after (a sync, then the rebuild) found the account still busy.
        # Then invalidated, so the pool never hands the connection out again.
        try:
            self.conn.execute(
                text("SELECT pg_advisory_unlock(:ns, :id)"), {"ns": PG_NAMESPACE, "id": self.account.id}
            )
        except Exception:  # the connection is gone already: the server dropped the lock with it
            log.debug("advisory unlock of account %s failed; closing the session frees it", self.account.id)
        finally:
            try:
                self.conn.invalidate()
            finally:
                self.conn.close()


# --- SQLite: a file beside the database ----------------------------------------------------------------


def _lock_path(settings: Settings, engine: Engine, account: Account) -> Path:
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        return Path(f"{database}.account-{account.id}.lock")
    return settings.home / "locks" / f"account-{account.id}.lock"


class FileLock(HeldLock):
    """An exclusive flock on a file beside the SQLite database, holder written inside."""

    def __init__(self, fd: int, path: Path, account: Account, holder: Holder) -> None:
        super().__init__(account, holder)
        self.fd, self.path = fd, path

    @classmethod
    def acquire(cls, path: Path, account: Account, holder: Holder) -> FileLock:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LockUnavailable(
                f"cannot create the lock file of account {account.name!r} beside the database "
                f"({exc.strerror}): {path}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(fd, "rb") as handle:
                raise AccountBusy(account.name, Holder.from_json(handle.read()), holder.purpose) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.to_json().encode(), 0)
        return cls(fd, path, account, holder)

    def still_held(self) -> bool:
        try:
            return os.fstat(self.fd).st_ino == os.stat(self.path).st_ino
        except OSError:  # removed: another run could lock a new file of that name
            return False

    def release(self) -> None:
        try:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


def holder_of(settings: Settings, engine: Engine, account: Account) -> Holder | None:
    """Who holds the account's lock now, or None: a look that never takes the lock itself (taking it, even
    for an instant, could refuse the run being looked for). For tests and a future `status`."""
    if uses_redis(settings):
        client = redis.Redis.from_url(settings.retention_broker_url, socket_connect_timeout=5)
        try:
            return Holder.from_json(client.get(redis_key(account)))
        finally:
            client.close()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return _from_label(conn.execute(_HOLDER_SQL, {"ns": PG_NAMESPACE, "id": account.id}).scalar())
    try:
        found = Holder.from_json(_lock_path(settings, engine, account).read_bytes())
    except OSError:
        return None
    return found if found is not None and _alive(found) else None  # a killed holder leaves its file


def _alive(holder: Holder) -> bool:
    if holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = [
    "AccountBusy",
    "HeldLock",
    "Holder",
    "LockLost",
    "LockUnavailable",
    "account_lock",
    "acquire",
    "exclusive",
    "holder_of",
    "uses_redis",
]
