"""The per-account nightly lock: one holder at a time, freed on release, expiring when its holder dies."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from worker.locks import file_lock, lock_name, redis_lock


def test_file_lock_refuses_a_second_holder_until_released(tmp_path: Path) -> None:
    with file_lock(tmp_path, 1) as first:
        assert first
        with file_lock(tmp_path, 1) as second:  # a separate open file: flock conflicts even in one process
            assert not second
        with file_lock(tmp_path, 2) as other_account:
            assert other_account
    with file_lock(tmp_path, 1) as again:
        assert again


def test_redis_lock_refuses_a_second_holder_until_released(redis_url: str) -> None:
    with redis_lock(redis_url, 7, ttl=5) as first:
        assert first
        with redis_lock(redis_url, 7, ttl=5) as second:
            assert not second
        with redis_lock(redis_url, 8, ttl=5) as other_account:
            assert other_account
    assert redis.Redis.from_url(redis_url).get(lock_name(7)) is None
    with redis_lock(redis_url, 7, ttl=5) as again:
        assert again


def test_heartbeat_keeps_a_long_run_locked_past_the_ttl(redis_url: str) -> None:
    with redis_lock(redis_url, 7, ttl=0.6) as held:
        assert held
        time.sleep(1.5)  # 2.5 TTLs: without the heartbeat the key would be gone
        with redis_lock(redis_url, 7, ttl=0.6) as second:
            assert not second


def test_a_dead_holders_lock_expires(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(lock_name(7), b"some-dead-task", px=300)  # what a SIGKILLed holder leaves: no heartbeat
    with redis_lock(redis_url, 7, ttl=5) as blocked:
        assert not blocked
    time.sleep(0.4)
    with redis_lock(redis_url, 7, ttl=5) as held:
        assert held


def test_a_redelivered_task_takes_over_its_own_lock_but_not_anothers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(lock_name(7), b"task-1", px=60_000)  # task-1's worker was killed; its lock is still alive
    with redis_lock(redis_url, 7, ttl=5, owner="task-2") as other_task:
        assert not other_task
    with redis_lock(redis_url, 7, ttl=5, owner="task-1") as redelivered:
        assert redelivered
        assert client.pttl(lock_name(7)) <= 5000  # now on this delivery's ttl and heartbeat
    assert client.get(lock_name(7)) is None  # and released at the end like any other
