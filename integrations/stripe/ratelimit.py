"""The request budget of one Stripe account: a spacing limiter, in-process or shared through Redis.

Stripe's limits are per account, shared by every key and client (docs/stripe.md), so when several
workers sync one account they must draw on one budget: the Redis limiter hands out time slots from one key.
Slots are spaced evenly (1/rps apart) rather than granted in bursts, which keeps us clear of Stripe's per-
second window while still reaching the budget when enough requests are in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis


class Limiter(Protocol):
    def acquire(self) -> None:
        """Block until one request may be sent."""


class Unlimited:
    """Budget 0: never waits."""

    def acquire(self) -> None:
        return None


class LocalLimiter:
    """Evenly spaced slots for the threads of one process."""

    def __init__(
        self,
        rps: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rps <= 0:
            raise ValueError("rps must be positive; use Unlimited for no budget")
        self.interval = 1.0 / rps
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


# Atomically reserve the next slot; Redis' own clock is the one clock every worker shares.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, nxt)
redis.call('SET', KEYS[1], tostring(slot + tonumber(ARGV[1])), 'PX', 60000)
return slot - now
"""


class RedisLimiter:
    """Evenly spaced slots shared by every process that uses the same Redis key (one per Stripe account)."""

    def __init__(
        self, redis_url: str, key: str, rps: float, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        if rps <= 0:
            raise ValueError("rps must be positive; use Unlimited for no budget")
        self.key = key
        self.interval_us = int(1_000_000 / rps)
        self._sleep = sleep
        self._redis = redis.Redis.from_url(redis_url)
        self._script = self._redis.register_script(_RESERVE)

    def acquire(self) -> None:
        wait_us = int(self._script(keys=[self.key], args=[self.interval_us]))
        if wait_us > 0:
            self._sleep(wait_us / 1_000_000)


def make_limiter(rps: float, redis_url: str | None = None, key: str = "") -> Limiter:
    """The limiter for a budget: 0 = unlimited; shared through Redis when a URL is given."""
    if rps <= 0:
        return Unlimited()
    if redis_url:
        return RedisLimiter(redis_url, f"retention:stripe-rps:{key}", rps)
    return LocalLimiter(rps)
