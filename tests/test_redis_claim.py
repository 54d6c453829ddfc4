"""The tests' Redis database is claimed by a marker; one holding anything else is refused, not flushed."""

from __future__ import annotations

import pytest
import redis

from tests.support.redis_db import MARKER, ForeignDatabase, claim


def test_a_database_with_foreign_keys_is_refused_and_left_alone(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(MARKER)
    client.set("someone-elses:key", "kept")
    with pytest.raises(ForeignDatabase, match="did not write"):
        claim(client, redis_url)
    assert client.get("someone-elses:key") == b"kept"
    client.delete("someone-elses:key")


def test_an_empty_or_marked_database_is_claimed_and_emptied(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("left:by-an-earlier-test", "1")
    claim(client, redis_url)
    assert client.keys("*") == [MARKER.encode()]
    client.flushdb()
    claim(client, redis_url)
    assert client.keys("*") == [MARKER.encode()]
