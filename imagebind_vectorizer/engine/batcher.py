"""Dynamic batching for one input kind.

Preprocessed items wait in a queue; the batcher takes the first, then keeps collecting until the
batch holds `max_rows` forward passes or `max_wait` has passed since the first arrived, whichever
comes first, and hands the batch to the model. Items from any number of concurrent requests share
a batch; each caller's future gets exactly its own rows back. While the model is busy the queue
fills, so under load batches form without waiting at all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import torch

from imagebind_vectorizer.errors import DeadlineExceededError
from imagebind_vectorizer.kinds import InputKind

log = logging.getLogger(__name__)


@dataclass(eq=False)
class WorkItem:
    rows: torch.Tensor  # (clips, ...) model input of one item
    future: asyncio.Future[torch.Tensor]  # resolves to (clips, D) per-clip embeddings
    deadline: float | None = None  # time.monotonic() value after which the result is useless
    on_done: Callable[[], None] = lambda: None  # releases the item's queue slot, exactly once
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def count(self) -> int:
        return int(self.rows.shape[0])


RunBatch = Callable[[InputKind, list[WorkItem]], Awaitable[torch.Tensor]]


class Batcher:
    def __init__(self, kind: InputKind, run_batch: RunBatch, *, max_rows: int, max_wait_s: float,
                 admitted_rows: Callable[[], int] | None = None) -> None:
        self.kind = kind
        self._run_batch = run_batch
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        # Rows admitted for this kind and not yet finished (being preprocessed, queued or in the
        # batch being collected). When the batch already holds all of them, nothing else is on its
        # way and waiting would only add latency: a lone request runs at once.
        self._admitted_rows = admitted_rows
        self._queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.kind.value}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():  # nothing may be left waiting forever
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(DeadlineExceededError("server shut down before the item was computed"))
            item.on_done()

    def submit(self, item: WorkItem) -> None:
        self._queue.put_nowait(item)

    async def _collect(self) -> list[WorkItem]:
        first = await self._queue.get()
        batch, rows = [first], first.count
        give_up = time.monotonic() + self.max_wait_s
        while rows < self.max_rows:
            if self._queue.empty():
                remaining = give_up - time.monotonic()
                if remaining <= 0 or (self._admitted_rows is not None and self._admitted_rows() <= rows):
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            batch.append(item)
            rows += item.count
        return batch

    def _live(self, batch: list[WorkItem]) -> list[WorkItem]:
        """Drop items nobody waits for: cancelled by a gone client, or past their deadline."""
        now = time.monotonic()
        live = []
        for item in batch:
            if item.future.done():
                item.on_done()
            elif item.deadline is not None and now > item.deadline:
                item.future.set_exception(DeadlineExceededError("deadline passed before the item was computed"))
                item.on_done()
            else:
                live.append(item)
        return live

    async def _loop(self) -> None:
        while True:
            batch = self._live(await self._collect())
            if not batch:
                continue
            try:
                per_clip = await self._run_batch(self.kind, batch)
            except asyncio.CancelledError:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(DeadlineExceededError("server shut down"))
                    item.on_done()
                raise
            except Exception as exc:  # a model fault fails this batch only, never the batcher
                log.exception("model call failed for a %s batch of %d items", self.kind.value, len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                    item.on_done()
                continue
            for item, rows in zip(batch, per_clip.split([i.count for i in batch]), strict=True):
                if not item.future.done():
                    item.future.set_result(rows)
                item.on_done()
