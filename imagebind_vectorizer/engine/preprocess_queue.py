"""Which waiting item is preprocessed next, when more items wait than there are workers (the text
threads, the decoder processes).

In arrival order, one request of many costly items holds every worker until all of them are done:
250 texts whose cleaning takes half a second each kept a one-text search waiting two minutes, though
the model itself would have run the search at once. So requests take turns: an item's place is its
request's admission time plus its position in the request times the measured seconds per item
(stretched by the request's priority, as in the scheduler). A request that arrives while another is
being preprocessed goes ahead of that request's later items, and since every place is fixed while
new arrivals are placed at their own, later time, every waiting item eventually comes first:
nothing starves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from imagebind_vectorizer.engine.scheduler import STRETCH, Priority

#: how fast the estimate of seconds per item follows new measurements
SMOOTHING = 0.2


@dataclass(eq=False)
class _Waiter:
    admitted: float
    position: int
    share: float  # the priority's stretch relative to the default
    granted: asyncio.Future[None]


class PreprocessQueue:
    """At most `workers` items preprocess at once; waiting items start in the order of their place."""

    def __init__(self, workers: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._free = max(1, workers)
        self._waiting: list[_Waiter] = []
        self._clock = clock
        self.item_seconds = 0.0  # measured (exponentially weighted); 0 until the first item finished

    @asynccontextmanager
    async def turn(self, admitted: float, position: int, priority: Priority,
                   abandoned: asyncio.Future[Any]) -> AsyncIterator[None]:
        """Wait for this item's turn (the `position`-th item of a request admitted at `admitted`),
        then hold a worker for the block. Raises `abandoned`'s exception at once if it resolves
        first (the engine gave up the item: shutdown)."""
        acquiring = asyncio.ensure_future(self._acquire(admitted, position, priority))
        try:
            await asyncio.wait({acquiring, abandoned}, return_when=asyncio.FIRST_COMPLETED)
            if not acquiring.done():
                raise abandoned.exception() or RuntimeError("an item resolved before it was computed")
        except BaseException:
            self._give_up(acquiring)
            raise
        started = self._clock()
        left = False
        try:
            yield
        except asyncio.CancelledError:
            left = True  # a caller that left says nothing about what an item costs
            raise
        finally:
            if not left:
                self._learn(self._clock() - started)
            self._release()

    async def _acquire(self, admitted: float, position: int, priority: Priority) -> None:
        if self._free and not self._waiting:
            self._free -= 1
            return
        share = STRETCH[priority] / STRETCH[Priority.DEFAULT]
        waiter = _Waiter(admitted, position, share, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.granted.done() and not waiter.granted.cancelled():
                self._release()  # granted, then its caller left before it started: pass the worker on
            raise

    def _give_up(self, acquiring: asyncio.Task[None]) -> None:
        """Leave the queue (or hand back a worker already granted)."""
        if not acquiring.cancel() and not acquiring.cancelled() and acquiring.exception() is None:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            waiter = min(self._waiting, key=self._place_of)  # ties: the earlier arrival
            self._waiting.remove(waiter)
            if not waiter.granted.done():
                waiter.granted.set_result(None)
                return
        self._free += 1

    def _place_of(self, waiter: _Waiter) -> float:
        return waiter.admitted + (waiter.position + 1) * self.item_seconds * waiter.share

    def _learn(self, seconds: float) -> None:
        self.item_seconds = seconds if not self.item_seconds else \
            self.item_seconds + SMOOTHING * (seconds - self.item_seconds)
