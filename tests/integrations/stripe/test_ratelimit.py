"""The request budget: even spacing in one process, and one budget shared through Redis by several workers."""

from __future__ import annotations

import threading
import time

from integrations.stripe.ratelimit import LocalLimiter, RedisLimiter, Unlimited, make_limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_local_limiter_spaces_requests_by_one_over_rps() -> None:
    clock = FakeClock()
    limiter = LocalLimiter(4.0, clock=clock, sleep=clock.sleep)
    for _ in range(4):
        limiter.acquire()
    # all four asked at the same instant: the first goes now, then 0.25 s apart
    assert clock.slept == [0.25, 0.5, 0.75]
    clock.now += 10  # after a quiet spell there is no debt and no burst credit beyond one slot
    limiter.acquire()
    assert clock.slept == [0.25, 0.5, 0.75]


def test_local_limiter_holds_threads_to_the_budget() -> None:
    limiter = LocalLimiter(50.0)
    start = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start >= 19 / 50 - 0.01  # 20 requests at 50/s: the last at >= 0.38 s


def test_make_limiter_budget_zero_is_unlimited() -> None:
    assert isinstance(make_limiter(0), Unlimited)
    assert isinstance(make_limiter(5), LocalLimiter)


def test_redis_budget_is_shared_by_two_workers(redis_url: str) -> None:
    a = make_limiter(40.0, redis_url, "acct_shared")
    b = RedisLimiter(redis_url, "retention:stripe-rps:acct_shared", 40.0)
    other = make_limiter(40.0, redis_url, "acct_other")
    assert isinstance(a, RedisLimiter)
    start = time.monotonic()
    threads = [threading.Thread(target=lambda lim=lim: [lim.acquire() for _ in range(10)]) for lim in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shared = time.monotonic() - start
    assert shared >= 19 / 40 - 0.02  # 20 slots of one 40/s budget, not two budgets of 10 each (0.225 s)
    start = time.monotonic()
    for _ in range(5):
        other.acquire()  # another account has its own budget: not delayed by the first one's debt
    assert time.monotonic() - start < 0.4  # its 5 slots need 0.1 s; a loaded machine may add some
