"""The cyclic collector paused over a batch loop, and left as it was found."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from metrics.cycles import without_cycle_collection


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


@pytest.mark.usefixtures("collector_on")
def test_paused_inside_and_on_again_after_even_on_error() -> None:
    with without_cycle_collection():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), without_cycle_collection():
        raise RuntimeError
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_nested_or_already_off_it_stays_as_it_was() -> None:
    with without_cycle_collection():
        with without_cycle_collection():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block does not turn it back on under the outer one
    assert gc.isenabled()
    gc.disable()
    with without_cycle_collection():
        pass
    assert not gc.isenabled()
    gc.enable()
