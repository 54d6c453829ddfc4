"""The tests' Redis database: named by RETENTION_TEST_REDIS, claimed by a marker key, never someone else's.

A database is flushed only when it is empty or carries our marker, so pointing RETENTION_TEST_REDIS at a
Redis that serves anything else (a broker, a cache, another checkout's test run) fails instead of erasing it.
Parallel test runs on one server each take a database number of their own.
"""

from __future__ import annotations

import os

import redis

REDIS_URL = os.environ.get("RETENTION_TEST_REDIS", "redis://127.0.0.1:6379/15")
MARKER = "retention-tests:owned"


class ForeignDatabase(Exception):
    """The database holds keys these tests did not write."""


def claim(client: redis.Redis, url: str = REDIS_URL) -> None:
    """Empty the database and mark it ours, or raise ForeignDatabase when it holds anything else."""
    size = int(client.dbsize())
    if size and not client.exists(MARKER):
        raise ForeignDatabase(
            f"{url} holds {size} keys these tests did not write; refusing to flush it. "
            "Point RETENTION_TEST_REDIS at an empty database (e.g. redis://127.0.0.1:6379/14)"
        )
    reset(client)


def reset(client: redis.Redis) -> None:
    """Empty a database already claimed, keeping the marker."""
    client.flushdb()
    client.set(MARKER, "1")
