"""Build the next input batches in a background thread, and measure how long the step waits for them.

The host's input work (gathering blocks, transforming, masking, copying to the devices) runs while the
devices compute the current step; the training loop only blocks when no batch is ready, and that blocked
time is the input wait it reports (`train/input_wait_s`). Each batch travels with the iterator state right
after it was drawn, so a checkpoint records the position of the last batch *consumed*, not of the batches
already prefetched, and a resume continues with exactly the next batch.

A thread rather than processes: the work is vectorised NumPy and XLA transfers, which release the GIL.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

_DONE = object()


class Prefetcher:
    """`next()` returns `(batch, iterator_state, wait_seconds)`; `prepare` runs in the thread (e.g. device_put)."""

    def __init__(
        self,
        iterator: Iterator[dict],
        prepare: Callable[[dict], Any] = lambda batch: batch,
        *,
        depth: int = 2,
        get_state: Callable[[], Any] | None = None,
    ):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._iterator = iterator
        self._prepare = prepare
        self._get_state = get_state or getattr(iterator, "get_state", lambda: None)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="xlt_jax-prefetch", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    local = next(self._iterator)
                except StopIteration:
                    self._put(_DONE)
                    return
                state = self._get_state()
                self._put((self._prepare(local), state))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, who re-raises it
            self._put(error)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> tuple[Any, Any, float]:
        t0 = time.perf_counter()
        item = self._queue.get()
        wait = time.perf_counter() - t0
        if item is _DONE:
            self._queue.put(_DONE)
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        batch, state = item
        return batch, state, wait

    def close(self) -> None:
        """Stop the thread (it may have drawn batches ahead; they are dropped, the state says where we are)."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=10)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
