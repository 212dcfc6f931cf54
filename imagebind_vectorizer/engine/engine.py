"""The engine both transports call: admission with back-pressure, the vector cache, preprocessing
(media in decoder processes, text in threads), per-kind dynamic batching, model calls on one model
thread, and results back to each caller in order. It is the only place that knows about threads,
processes, queues and devices."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum

import numpy as np
import torch

from imagebind_vectorizer.engine.batcher import Batcher, WorkItem
from imagebind_vectorizer.engine.cache import VectorCache, content_key
from imagebind_vectorizer.engine.decode_pool import DecodeLimits, DecodePool
from imagebind_vectorizer.engine.metrics import EngineMetrics
from imagebind_vectorizer.errors import DeadlineExceededError, InputError, NotReadyError, OverloadedError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.runtime.info import ModelInfo
from imagebind_vectorizer.settings import Settings

log = logging.getLogger(__name__)

#: bytes of items hashed for the cache between yields to the event loop (~10 ms of sha256)
HASH_SLICE_BYTES = 4 * 1024 * 1024

class State(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


class _Slot:
    """An admitted item's share of its kind's queue; released exactly once."""

    __slots__ = ("engine", "kind", "released", "rows")

    def __init__(self, engine: Engine, kind: InputKind, rows: int) -> None:
        self.engine, self.kind, self.rows, self.released = engine, kind, rows, False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.engine._release(self.kind, self.rows)


class Engine:
    def __init__(self, settings: Settings, *, embedder: Embedder | None = None,
                 decode_pool: DecodePool | None = None) -> None:
        self.settings = settings
        self.metrics = EngineMetrics()
        self.embedder = embedder
        self.state = State.STARTING
        self.load_error: str | None = None
        self.cache = VectorCache(settings.cache_size)
        workers = settings.workers or os.cpu_count() or 1
        self._preprocess_pool = ThreadPoolExecutor(workers, thread_name_prefix="preprocess")
        self._decode_pool = decode_pool or DecodePool(workers, DecodeLimits(
            cpu_s=settings.decode_cpu_s, wall_s=settings.decode_wall_s, memory_mb=settings.decode_memory_mb))
        self._model_pool = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._pending: dict[InputKind, int] = {kind: 0 for kind in InputKind}
        self._batchers: dict[InputKind, Batcher] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._info: ModelInfo | None = None
        self._variant = f"{settings.preprocessing}/{settings.output_scaling}"
        self._model_id = ""

    # Life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the batchers and load the model in a thread; transports may answer meanwhile
        (readiness stays false until the model is loaded)."""
        for kind in self.settings.enabled_kinds:
            batcher = Batcher(kind, self._run_batch, max_rows=self.settings.max_batch_size,
                              max_wait_s=self.settings.max_wait_ms / 1000,
                              admitted_rows=lambda kind=kind: self._pending[kind])
            batcher.start()
            self._batchers[kind] = batcher
        if self.embedder is None:
            try:
                self.embedder = await asyncio.get_running_loop().run_in_executor(
                    self._model_pool, lambda: Embedder(self.settings, progress=False))
            except Exception as exc:
                self.state = State.FAILED
                self.load_error = str(exc)
                log.error("model failed to load: %s", exc)
                raise
        # Fixed for the engine's life: the checkpoint's id changes when its background sha256
        # finishes, and cache keys must not (nor should each lookup stat the file).
        self._model_id = self.embedder.checkpoint.model_id
        self.embedder.ensure_checkpoint_digest()
        info = self._info = self.embedder.model_info()
        self.state = State.READY
        self.metrics.ready.set(1)
        log.info("ready", extra={"fields": {
            "device": info.device, "dtype": info.dtype, "modalities": list(info.encoders),
            "checkpoint": info.checkpoint.path, "load_seconds": round(self.embedder.load_seconds, 2),
            "preprocessing": info.preprocessing.value, "output_scaling": info.output_scaling.value}})

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    def check_ready(self) -> None:
        """Raise NotReadyError unless work is accepted now: transports call it before reading a body."""
        if self.state is not State.READY:
            raise NotReadyError("the model is still loading" if self.state is State.STARTING else
                                f"the server is {self.state.value}")

    def model_info(self) -> ModelInfo | None:
        """The loaded model's description (None until it is loaded; then see `state` and
        `load_error`). Answered from memory: Weaviate calls /meta on every readiness check."""
        if self._info is not None and self.embedder is not None and \
                self.embedder.checkpoint is not self._info.checkpoint:
            self._info = self.embedder.model_info()  # the background checkpoint digest has finished
        return self._info

    async def drain(self, grace_s: float) -> bool:
        """Stop accepting work and wait (up to `grace_s`) for what was admitted. True if it all finished."""
        if self.state is State.READY:
            self.state = State.DRAINING
        self.metrics.ready.set(0)
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
            return True
        except TimeoutError:
            log.warning("shutdown grace period over with work still queued: %s",
                        {k.value: v for k, v in self._pending.items() if v})
            return False

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.stop()
        self.state = State.STOPPED
        self._preprocess_pool.shutdown(wait=False, cancel_futures=True)
        self._decode_pool.close()
        self._model_pool.shutdown(wait=False, cancel_futures=True)

    # Embedding --------------------------------------------------------------------------------
    async def embed(self, kind: InputKind, items: Sequence[bytes | str], *,
                    deadline: float | None = None) -> list[np.ndarray]:
        return (await self.embed_request({kind: items}, deadline=deadline))[kind]

    async def embed_request(self, request: Mapping[InputKind, Sequence[bytes | str]], *,
                            deadline: float | None = None) -> dict[InputKind, list[np.ndarray]]:
        """Vectors for every item of every kind, in input order. All-or-nothing: the first bad
        item fails the whole request with an InputError carrying its kind and its index among
        that kind's items (transports name it in their own vocabulary)."""
        self.check_ready()
        embedder = self.embedder
        assert embedder is not None
        results: dict[InputKind, list[np.ndarray | None]] = {}
        todo: list[tuple[InputKind, int, bytes | str, bytes | None]] = []
        hashed = 0
        for kind, items in request.items():
            if not items:
                results[kind] = []
                continue
            try:
                embedder.require(kind)
            except InputError as exc:
                self.metrics.errors.labels(kind.value, exc.reason).inc()
                raise exc.at(kind, None) from None
            results[kind] = [None] * len(items)
            cached = kind in self.settings.cached_kinds
            for index, item in enumerate(items):
                key = content_key(kind.value, item, self._model_id, self._variant) if cached else None
                if cached and (hashed := hashed + len(item)) > HASH_SLICE_BYTES:
                    hashed = 0
                    await asyncio.sleep(0)  # a request's hashing must not hold the event loop
                hit = self.cache.get(key) if key is not None else None
                if hit is not None:
                    results[kind][index] = hit
                    self.metrics.cache.labels(kind.value, "hit").inc()
                    continue
                if cached:
                    self.metrics.cache.labels(kind.value, "miss").inc()
                todo.append((kind, index, item, key))
        slots = self._admit(todo)
        try:
            tasks = [asyncio.ensure_future(self._embed_one(kind, item, slot, deadline))
                     for (kind, _, item, _), slot in zip(todo, slots, strict=True)]
            try:
                vectors = await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        except InputError as exc:
            failed = next(((k, i) for (k, i, _, _), t in zip(todo, tasks, strict=True)
                           if t.done() and not t.cancelled() and t.exception() is exc), (None, None))
            kind, index = failed
            self.metrics.errors.labels(kind.value if kind else "unknown", exc.reason).inc()
            raise (exc.at(kind, index) if kind else exc) from None
        for (kind, index, _, key), vector in zip(todo, vectors, strict=True):
            results[kind][index] = vector
            if key is not None:
                self.cache.put(key, vector)
        for kind, items in request.items():
            self.metrics.items.labels(kind.value).inc(len(items))
        done: dict[InputKind, list[np.ndarray]] = {}
        for kind, found in results.items():
            assert all(v is not None for v in found), "an item got no vector"  # order must never shift
            done[kind] = found  # type: ignore[assignment]
        return done

    async def embed_rows(self, kind: InputKind, rows: torch.Tensor, *, deadline: float | None = None) -> np.ndarray:
        """An item someone else already preprocessed (a window of a long file: `rows` is exactly
        what `preprocess` returns) -> its vector. Admitted and batched like any other item of its
        kind, so windows batch with each other and with other requests."""
        if self.state is not State.READY:
            raise NotReadyError(f"the server is {self.state.value}")
        assert self.embedder is not None
        self.embedder.require(kind)
        [slot] = self._admit([(kind, -1, b"", None)], row_counts=[int(rows.shape[0])])
        try:
            future: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().create_future()
            self._batchers[kind].submit(WorkItem(rows, future, deadline, on_done=slot.release))
        except BaseException:
            slot.release()
            raise
        per_clip = await future
        self.metrics.items.labels(kind.value).inc()
        return self.embedder.finish(per_clip, [per_clip.shape[0]])[0].numpy()

    def _admit(self, todo: list[tuple[InputKind, int, bytes | str, bytes | None]],
               row_counts: list[int] | None = None) -> list[_Slot]:
        counts = row_counts or [kind.facts.rows_per_item for kind, *_ in todo]
        need: dict[InputKind, int] = {}
        for (kind, *_), count in zip(todo, counts, strict=True):
            need[kind] = need.get(kind, 0) + count
        limit = self.settings.queue_size
        for kind, rows in need.items():
            if rows > limit:
                raise InputError(f"the request holds {rows} {kind.value} forward passes, more than the queue "
                                 f"size of {limit}; split it into smaller requests", reason="too_large")
            if self._pending[kind] + rows > limit:
                self.metrics.errors.labels(kind.value, "overloaded").inc()
                raise OverloadedError(f"the {kind.value} queue is full ({self._pending[kind]} of {limit} forward "
                                      "passes waiting); retry later")
        slots = []
        for (kind, *_), count in zip(todo, counts, strict=True):
            self._pending[kind] += count
            slots.append(_Slot(self, kind, count))
            self.metrics.queue_depth.labels(kind.value).set(self._pending[kind])
        if slots:
            self._idle.clear()
        return slots

    def _release(self, kind: InputKind, rows: int) -> None:
        self._pending[kind] -= rows
        self.metrics.queue_depth.labels(kind.value).set(self._pending[kind])
        if not any(self._pending.values()):
            self._idle.set()

    async def _embed_one(self, kind: InputKind, item: bytes | str, slot: _Slot,
                         deadline: float | None) -> np.ndarray:
        loop = asyncio.get_running_loop()
        embedder = self.embedder
        assert embedder is not None
        try:
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceededError("deadline passed before the item was computed")
            started = time.monotonic()
            if kind is InputKind.TEXT:  # pure Python with bounded work: in process
                gone = threading.Event()  # set when this task ends, so an abandoned tokenizer stops

                def stop() -> bool:
                    return gone.is_set() or (deadline is not None and time.monotonic() > deadline)

                try:
                    rows = await loop.run_in_executor(self._preprocess_pool, functools.partial(
                        embedder.preprocess, kind, item, stop=stop))
                finally:
                    gone.set()
            else:  # FFmpeg and Pillow: where a fault cannot take the process down
                rows = await self._decode_pool.preprocess(kind, item, embedder.options, deadline=deadline)
            self.metrics.stage_seconds.labels(kind.value, "preprocess").observe(time.monotonic() - started)
            future: asyncio.Future[torch.Tensor] = loop.create_future()
            self._batchers[kind].submit(WorkItem(rows, future, deadline, on_done=slot.release))
        except BaseException:
            slot.release()
            raise
        per_clip = await future
        return embedder.finish(per_clip, [per_clip.shape[0]])[0].numpy()

    async def _run_batch(self, kind: InputKind, batch: list[WorkItem]) -> torch.Tensor:
        started = time.monotonic()
        for item in batch:
            self.metrics.stage_seconds.labels(kind.value, "queue").observe(started - item.enqueued)
        rows = torch.cat([item.rows for item in batch])
        self.metrics.batch_rows.labels(kind.value).observe(rows.shape[0])
        self.metrics.batch_items.labels(kind.value).observe(len(batch))
        per_clip = await asyncio.get_running_loop().run_in_executor(self._model_pool, self._forward, kind, rows)
        self.metrics.stage_seconds.labels(kind.value, "forward").observe(time.monotonic() - started)
        return per_clip

    def _forward(self, kind: InputKind, rows: torch.Tensor) -> torch.Tensor:
        assert self.embedder is not None
        return self.embedder.forward_rows(kind, rows, self.settings.max_batch_size)
