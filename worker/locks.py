"""One nightly run per account at a time: a Redis lock for workers, a file lock for a run on one machine.

Two runs of one account at once would sync the same objects twice and race on the snapshots; the second
trigger is skipped instead. The Redis lock has a short expiry that a heartbeat thread keeps extending while
the run is alive, so a worker killed mid-run (SIGKILL, a lost machine) frees the account within `ttl` seconds
and the redelivered task can take it, while a long healthy run never loses its lock. Without Redis (`retention
nightly` on the embedded SQLite) an OS file lock does the same job across processes of one machine, and the
kernel drops it when the process dies.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import redis

log = logging.getLogger(__name__)

DEFAULT_TTL = 60.0


def lock_name(account_id: int) -> str:
    return f"retention:nightly:lock:{account_id}"


class _Heartbeat(threading.Thread):
    """Extends a Redis lock every ttl/3 seconds until stopped, so only a dead holder lets it expire."""

    def __init__(self, lock: redis.lock.Lock, ttl: float) -> None:
        super().__init__(name="nightly-lock-heartbeat", daemon=True)
        self.lock = lock
        self.ttl = ttl
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.ttl / 3):
            try:
                self.lock.reacquire()
            except Exception as exc:  # Redis blip or the lock lost: the run goes on, the log says so
                log.warning("could not extend the nightly lock %s: %s", self.lock.name, exc)


@contextmanager
def redis_lock(
    redis_url: str, account_id: int, ttl: float = DEFAULT_TTL, owner: str | None = None
) -> Iterator[bool]:
    """Yields True when this process holds the account's lock, False when another run holds it.

    `owner` (the Celery task id) is stored as the lock's token. A task redelivered after its worker died finds
    the lock still held under its own id and takes it over at once instead of skipping its own night; a
    different task id means a genuinely different run, which is skipped.
    """
    client = redis.Redis.from_url(redis_url)
    lock = client.lock(lock_name(account_id), timeout=ttl, blocking=False, thread_local=False)
    if not lock.acquire(blocking=False, token=owner):
        if owner is None or client.get(lock_name(account_id)) != owner.encode():
            client.close()
            yield False
            return
        lock.local.token = owner.encode()
        lock.reacquire()
        log.warning("took over the nightly lock left by an earlier delivery of this task")
    beat = _Heartbeat(lock, ttl)
    beat.start()
    try:
        yield True
    finally:
        beat.stopped.set()
        beat.join()
        try:
            lock.release()
        except redis.exceptions.LockError:  # expired and maybe taken over: nothing of ours to release
            log.warning("the nightly lock %s had expired before release", lock_name(account_id))
        client.close()


@contextmanager
def file_lock(directory: Path, account_id: int) -> Iterator[bool]:
    """Yields True when this process holds the account's lock file, False when another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = open(directory / f"nightly-{account_id}.lock", "a+")  # noqa: SIM115 - held for the block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


@contextmanager
def account_lock(
    account_id: int, redis_url: str | None, lock_dir: Path, ttl: float = DEFAULT_TTL, owner: str | None = None
) -> Iterator[bool]:
    """The Redis lock when workers share a Redis, else the local file lock."""
    if redis_url:
        with redis_lock(redis_url, account_id, ttl, owner) as held:
            yield held
    else:
        with file_lock(lock_dir, account_id) as held:
            yield held
