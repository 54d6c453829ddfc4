"""The cyclic garbage collector paused over the batch loops that read a whole account.

Those loops (the rebuild, the at-risk run, the backtest) allocate many small objects per customer, none of
them in a reference cycle, and keep a batch of them alive across many allocations: the collector, triggered by
the count of allocations, moves each batch to the oldest generation and then walks the whole live heap (the
imported libraries included) about once a batch, for nothing. That was about 40% of the at-risk run's time.
Reference counting still frees each batch as the loop moves on, so memory stays bounded by a batch.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Automatic cycle collection off inside the block, as it was after it (nesting is harmless)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
