"""The background input prefetcher: order, per-batch iterator state, errors and the measured wait."""

from __future__ import annotations

import time

import pytest

from xlt_jax.training.prefetch import Prefetcher


class CountingIterator:
    """A stateful iterator like the pipeline's: state = number of batches drawn."""

    def __init__(self, limit: int, delay: float = 0.0, fail_at: int | None = None):
        self.position, self.limit, self.delay, self.fail_at = 0, limit, delay, fail_at

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.position == self.fail_at:
            raise ValueError(f"bad record at batch {self.position}")
        if self.position >= self.limit:
            raise StopIteration
        time.sleep(self.delay)
        self.position += 1
        return {"index": self.position - 1}

    def get_state(self) -> dict:
        return {"position": self.position}


def test_batches_arrive_in_order_with_the_state_after_each():
    iterator = CountingIterator(limit=6)
    with Prefetcher(iterator, lambda b: b["index"] * 10, depth=3) as ahead:
        items = list(ahead)
    assert [b for b, _, _ in items] == [0, 10, 20, 30, 40, 50]
    # The state travels with its batch, however far the thread has run ahead.
    assert [s["position"] for _, s, _ in items] == [1, 2, 3, 4, 5, 6]


def test_a_producer_error_reaches_the_consumer():
    with Prefetcher(CountingIterator(limit=10, fail_at=2)) as ahead:
        next(ahead), next(ahead)
        with pytest.raises(ValueError, match="bad record at batch 2"):
            next(ahead)


def test_wait_measures_a_slow_input_pipeline():
    with Prefetcher(CountingIterator(limit=4, delay=0.2), depth=1) as ahead:
        waits = [w for _, _, w in ahead]
    assert min(waits[1:]) > 0.1  # the consumer does nothing, so it waits ~0.2 s for every batch
    with Prefetcher(CountingIterator(limit=4), depth=4) as fast:
        time.sleep(0.2)  # everything is ready before it is asked for
        assert max(w for _, _, w in fast) < 0.05
