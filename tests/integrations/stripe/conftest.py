"""The local Stripe server the sync tests read from, over a small generated account."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stripe_world import build_world
from worker.demo.stripe_server import FakeStripe, StripeWorld


@pytest.fixture
def world() -> StripeWorld:
    return build_world(customers=30, months=6)


@pytest.fixture
def server(world: StripeWorld) -> Iterator[FakeStripe]:
    with FakeStripe(world) as fake:
        yield fake
    assert fake.writes == []  # a sync never writes to Stripe
