"""The engine both transports call: admission by expected time, the vector cache, preprocessing
(media in decoder processes, text in threads), and one model thread that runs whatever the
scheduler says is most urgent, one step (stem, trunk block, head) at a time, with results back to
each caller in order. It is the only place that knows about threads, processes, queues and devices.

    admission (scheduler.admit) -> preprocess (pool) -> scheduler queue -> model thread -> finish

Every admitted item holds its place until it is computed or its caller is gone: a disconnect, a
cancelled RPC or a passed deadline drops it from the queue at once, and a batch whose items are
all gone stops at its next step. Past the shutdown grace period everything still admitted fails
with NotReadyError (HTTP 503 / UNAVAILABLE) and the forward in progress stops at its next step."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch

from imagebind_vectorizer.engine.cache import VectorCache, content_key
from imagebind_vectorizer.engine.costs import CostModel
from imagebind_vectorizer.engine.decode_pool import DecodeLimits, DecodePool
from imagebind_vectorizer.engine.metrics import EngineMetrics
from imagebind_vectorizer.engine.model_thread import ModelThread, attach
from imagebind_vectorizer.engine.preprocess_queue import PreprocessQueue
from imagebind_vectorizer.engine.scheduler import Job, Priority, Scheduler
from imagebind_vectorizer.errors import DeadlineExceededError, InputError, NotReadyError, OverloadedError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.model.checkpoint import prefetch_pages
from imagebind_vectorizer.model.encoder import EncoderForward
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.runtime.info import ModelInfo
from imagebind_vectorizer.settings import Settings

log = logging.getLogger(__name__)

#: what the warm-up embeds per kind (the package's sample media: real decoding, real shapes)
SAMPLE_MEDIA = Path(__file__).resolve().parent.parent / "sample_media"
WARMUP_SAMPLES: Mapping[InputKind, str] = {
    InputKind.IMAGE: "checkerboard.png", InputKind.AUDIO: "beep_440hz.wav", InputKind.VIDEO: "bouncing_ball.mp4",
    InputKind.DEPTH: "room_depth.png", InputKind.THERMAL: "warm_hand_thermal.jpg", InputKind.IMU: "walking.csv",
}
WARMUP_TEXT = "a photo of a dog warming up"
#: bytes of items hashed for the cache between yields to the event loop (~10 ms of sha256)
HASH_SLICE_BYTES = 4 * 1024 * 1024


class State(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


class Engine:
    def __init__(self, settings: Settings, *, embedder: Embedder | None = None,
                 decode_pool: DecodePool | None = None, costs: CostModel | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.metrics = EngineMetrics()
        self.embedder = embedder
        self.state = State.STARTING
        self.load_error: str | None = None
        self.cache = VectorCache(settings.cache_size)
        self.costs = costs or CostModel(settings.max_batch_size)
        self.scheduler = Scheduler(self.costs, budget_s=settings.queue_budget_s, max_rows=settings.queue_size,
                                   max_wait_s=settings.max_wait_ms / 1000)
        self._clock = clock
        self._model = ModelThread(self.scheduler, self._start_forward, self.metrics, clock)
        workers = settings.workers or os.cpu_count() or 1
        self._preprocess_pool = ThreadPoolExecutor(workers, thread_name_prefix="preprocess")
        self._decode_pool = decode_pool or DecodePool(workers, DecodeLimits(
            cpu_s=settings.decode_cpu_s, wall_s=settings.decode_wall_s, memory_mb=settings.decode_memory_mb))
        # requests take turns for the text threads and the decoder processes (not arrival order)
        self._text_queue = PreprocessQueue(workers, clock)
        self._media_queue = PreprocessQueue(self._decode_pool.size, clock)
        self._in_flight = 0  # items admitted and not yet answered (event loop only)
        self._idle = asyncio.Event()
        self._idle.set()
        self._info: ModelInfo | None = None
        self._variant = f"{settings.preprocessing}/{settings.output_scaling}"
        self._model_id = ""
        for kind in InputKind:
            self.metrics.expected_wait.labels(kind.value).set_function(
                lambda kind=kind: self.expected_wait(kind) if self.ready else 0.0)
            self.metrics.model_cost.labels(kind.value).set_function(lambda kind=kind: self.costs.row_seconds(kind))
            self.metrics.pace.labels(kind.value).set_function(lambda kind=kind: self.scheduler.pace(kind))

    # Life cycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the model and warm it up in a thread; transports may answer meanwhile (readiness
        stays false until both are done)."""
        try:
            if self.embedder is None:
                self.embedder = await asyncio.to_thread(Embedder, self.settings, progress=False)
            if self.settings.warmup:
                decoded = await self._warm_decoders()
                await asyncio.to_thread(self._warm_up, decoded)
        except Exception as exc:
            self.state = State.FAILED
            self.load_error = str(exc)
            log.error("model failed to load: %s", exc)
            raise
        # Fixed for the engine's life: the checkpoint's id changes when its background sha256
        # finishes, and cache keys must not (nor should each lookup stat the file).
        self._model_id = self.embedder.checkpoint.model_id
        self.embedder.ensure_checkpoint_digest()
        self._model.start()
        info = self._info = self.embedder.model_info()
        self.state = State.READY
        self.metrics.ready.set(1)
        log.info("ready", extra={"fields": {
            "device": info.device, "dtype": info.dtype, "dtype_reason": info.dtype_reason,
            "modalities": list(info.encoders), "checkpoint": info.checkpoint.path,
            "load_seconds": round(self.embedder.load_seconds, 2), "preprocessing": info.preprocessing.value,
            "output_scaling": info.output_scaling.value}})

    def _warm_up(self, decoded: dict[InputKind, torch.Tensor]) -> None:
        """Make the first request as fast as the tenth: page the mapped weights in, then run one
        forward per kind (a second one for an encoder's first kind, whose first call also picks
        kernels) through the same stepwise path as serving; its time seeds the cost model. Media
        rows come `decoded` by the decoder processes' own warm-up; text is tokenized here."""
        embedder = self.embedder
        assert embedder is not None
        started = time.perf_counter()
        prefetch_pages(embedder.model)
        log.info("weights resident", extra={"fields": {"seconds": round(time.perf_counter() - started, 2)}})
        warm_encoders: set[str] = set()
        for kind in self.settings.enabled_kinds:
            rows = decoded[kind] if kind in decoded else embedder.preprocess(kind, WARMUP_TEXT)
            rows = rows[:1]
            if kind.encoder not in warm_encoders:
                self._forward_now(kind, rows)
                warm_encoders.add(kind.encoder)
            seconds = self._forward_now(kind, rows)
            self.costs.observe(kind, 1, seconds)
            log.info("warm-up", extra={"fields": {"kind": kind.value, "forward_seconds": round(seconds, 4)}})

    async def _warm_decoders(self) -> dict[InputKind, torch.Tensor]:
        """Start the media decoder processes before ready (a cold start added seconds to the first
        image) and decode each enabled media kind's sample in them: its rows, for the warm-up forward."""
        assert self.embedder is not None
        samples = [(kind, (SAMPLE_MEDIA / WARMUP_SAMPLES[kind]).read_bytes())
                   for kind in self.settings.enabled_kinds if kind is not InputKind.TEXT]
        if not samples:
            return {}
        started = time.perf_counter()
        try:
            rows = await self._decode_pool.warm(samples, self.embedder.options)
        except Exception as exc:  # media could not be decoded at all: say so now, not per request
            raise RuntimeError(f"the media decoder processes did not start: {exc}") from exc
        log.info("decoders started", extra={"fields": {
            "workers": self._decode_pool.workers, "seconds": round(time.perf_counter() - started, 2)}})
        return {kind: kind_rows for (kind, _), kind_rows in zip(samples, rows, strict=True)}

    def _forward_now(self, kind: InputKind, rows: torch.Tensor) -> float:
        assert self.embedder is not None
        forward = self.embedder.start_rows(kind, rows)
        started = time.perf_counter()
        with torch.inference_mode():
            while not forward.done:
                forward.step()
            forward.result().cpu()  # on a GPU: wait for it
        return time.perf_counter() - started

    def _start_forward(self, kind: Hashable, rows: torch.Tensor) -> EncoderForward:
        """A batch's forward, begun on the model thread (as steps it may pause between)."""
        assert self.embedder is not None and isinstance(kind, InputKind)
        return self.embedder.start_rows(kind, rows)

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    def model_info(self) -> ModelInfo | None:
        """The loaded model's description (None until it is loaded; then see `state` and
        `load_error`). Answered from memory: Weaviate calls /meta on every readiness check."""
        if self._info is not None and self.embedder is not None and \
                self.embedder.checkpoint is not self._info.checkpoint:
            self._info = self.embedder.model_info()  # the background checkpoint digest has finished
        return self._info

    async def drain(self, grace_s: float) -> bool:
        """Stop accepting work and wait up to `grace_s` for what was admitted. Past it, abandon
        the rest: its callers get NotReadyError now, the forward in progress stops at its next
        step. True if everything finished in time."""
        if self.state is State.READY:
            self.state = State.DRAINING
        self.metrics.ready.set(0)
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
            return True
        except TimeoutError:
            held = {kind.value: self.scheduler.held_rows(kind) for kind in InputKind if self.scheduler.held_rows(kind)}
            abandoned = self._model.abandon(NotReadyError(
                f"the server is shutting down and its grace period ({grace_s:g} s) is over before the item was "
                "computed; retry on another replica"))
            log.warning("shutdown grace period over: abandoned the work still admitted",
                        extra={"fields": {"items": abandoned, "forward_passes": held}})
            return False

    async def close(self) -> None:
        self.state = State.STOPPED
        self._model.abandon(NotReadyError("the server shut down"))
        await asyncio.to_thread(self._model.stop)
        self._preprocess_pool.shutdown(wait=False, cancel_futures=True)
        self._decode_pool.close()

    # Admission --------------------------------------------------------------------------------
    def check_admission(self, items: Mapping[InputKind, int] | None = None,
                        priority: Priority = Priority.DEFAULT) -> None:
        """Raise at once what `embed_request` would raise for a request of this shape, admitting
        nothing; cheap enough for a transport to call before it reads or decodes a body. `items`
        maps kinds to item counts; without it, refuse only when no enabled kind could take even
        one item (a body's size alone says nothing of its kinds)."""
        self.check_ready()
        now = self._clock()
        with self._model.lock:
            if items is not None:
                self.scheduler.check([(kind, kind.facts.rows_per_item) for kind, count in items.items()
                                      for _ in range(count)], priority, now)
                return
            refusals = []
            for kind in self.settings.enabled_kinds:
                try:
                    self.scheduler.check([(kind, kind.facts.rows_per_item)], priority, now)
                    return
                except OverloadedError as exc:
                    refusals.append(exc)
            if refusals:
                raise OverloadedError("every input kind's queue is full; retry later")

    def expected_wait(self, kind: InputKind, priority: Priority = Priority.DEFAULT) -> float:
        """Expected seconds until one item of `kind` admitted now would be computed."""
        with self._model.lock:
            return self.scheduler.expected_wait(kind, priority, self._clock(), kind.facts.rows_per_item)

    def check_ready(self) -> None:
        """Raise NotReadyError unless work is accepted now: transports call it before reading a body."""
        if self.state is not State.READY:
            raise NotReadyError("the model is still loading" if self.state is State.STARTING else
                                f"the server is {self.state.value}")

    # Embedding --------------------------------------------------------------------------------
    async def embed(self, kind: InputKind, items: Sequence[bytes | str], *, deadline: float | None = None,
                    priority: Priority = Priority.DEFAULT) -> list[np.ndarray]:
        return (await self.embed_request({kind: items}, deadline=deadline, priority=priority))[kind]

    async def embed_request(self, request: Mapping[InputKind, Sequence[bytes | str]], *,
                            deadline: float | None = None,
                            priority: Priority = Priority.DEFAULT) -> dict[InputKind, list[np.ndarray]]:
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
        jobs = self._admit(todo, priority)
        positions = _positions_in_request([kind for kind, *_ in todo])
        tasks = [asyncio.ensure_future(self._embed_one(kind, item, job, deadline, position))
                 for (kind, _, item, _), job, position in zip(todo, jobs, positions, strict=True)]
        try:
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

    async def embed_rows(self, kind: InputKind, rows: torch.Tensor, *, deadline: float | None = None,
                         priority: Priority = Priority.DEFAULT) -> np.ndarray:
        """An item someone else already preprocessed (a window of a long file: `rows` is exactly
        what `preprocess` returns) -> its vector. Admitted and scheduled like any other item of
        its kind, so windows batch with each other and with other requests."""
        self.check_ready()
        assert self.embedder is not None
        self.embedder.require(kind)
        [job] = self._admit([(kind, -1, b"", None)], priority, row_counts=[int(rows.shape[0])])
        vector = await self._embed_one(kind, rows, job, deadline)
        self.metrics.items.labels(kind.value).inc()
        return vector

    def _admit(self, todo: list[tuple[InputKind, int, bytes | str, bytes | None]],
               priority: Priority = Priority.DEFAULT, row_counts: list[int] | None = None) -> list[Job]:
        counts = row_counts or [kind.facts.rows_per_item for kind, *_ in todo]
        items = [(kind, count) for (kind, *_), count in zip(todo, counts, strict=True)]
        try:
            with self._model.lock:
                jobs = self.scheduler.admit(items, priority, self._clock())
        except OverloadedError:
            for kind in {kind for kind, _ in items}:
                self.metrics.errors.labels(kind.value, "overloaded").inc()
            raise
        if jobs:
            self._in_flight += len(jobs)
            self._idle.clear()
            self._update_depth({job.kind for job in jobs})  # type: ignore[misc]
        return jobs

    def _update_depth(self, kinds: set[InputKind]) -> None:
        for kind in kinds:
            self.metrics.queue_depth.labels(kind.value).set(self.scheduler.held_rows(kind))

    async def _embed_one(self, kind: InputKind, item: bytes | str | torch.Tensor, job: Job,
                         deadline: float | None, position: int = 0) -> np.ndarray:
        """One admitted item: preprocessed here (or already, as a tensor), computed when the
        scheduler says, its place in the queue given up however it ends."""
        loop = asyncio.get_running_loop()
        embedder = self.embedder
        assert embedder is not None
        future = attach(job, loop)
        try:
            remaining = None if deadline is None else deadline - self._clock()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceededError("deadline passed before the item was computed")
            async with asyncio.timeout(remaining):
                rows = item if isinstance(item, torch.Tensor) else \
                    await self._preprocess(kind, item, deadline, job, position, abandoned=future)
                self._model.ready(job, rows)
                per_clip = await future
        except TimeoutError:
            raise DeadlineExceededError("deadline passed before the item was computed") from None
        finally:
            # Computed, failed, cancelled or timed out: in every case the item leaves the queue now.
            self._model.drop(job)
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
            self._update_depth({kind})
        return embedder.finish(per_clip, [per_clip.shape[0]])[0].numpy()

    async def _preprocess(self, kind: InputKind, item: bytes | str, deadline: float | None, job: Job,
                          position: int, *, abandoned: asyncio.Future[torch.Tensor]) -> torch.Tensor:
        """The item's model input: text in a thread (pure Python with bounded work, stopped when
        its request is gone), media in a decoder process (where a fault cannot take the server
        down), each when its turn comes (`PreprocessQueue`: requests take turns, so one request of
        many costly items cannot keep a search waiting). Raises at once when the engine abandons
        the item meanwhile (shutdown)."""
        embedder = self.embedder
        assert embedder is not None
        started = time.monotonic()
        queue = self._text_queue if kind is InputKind.TEXT else self._media_queue
        async with queue.turn(job.admitted, position, job.priority, abandoned):
            gone = threading.Event()  # set when this item ends, so an abandoned tokenizer stops

            def stop() -> bool:
                return gone.is_set() or (deadline is not None and time.monotonic() > deadline)

            if kind is InputKind.TEXT:
                preprocessing: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().run_in_executor(
                    self._preprocess_pool, functools.partial(embedder.preprocess, kind, item, stop=stop))
            else:
                preprocessing = asyncio.ensure_future(
                    self._decode_pool.preprocess(kind, item, embedder.options, deadline=deadline))
            preprocessing.add_done_callback(_retrieve)  # its error may come after nobody waits
            try:
                await asyncio.wait({preprocessing, abandoned}, return_when=asyncio.FIRST_COMPLETED)
                if abandoned.done():
                    raise abandoned.exception() or RuntimeError("an item resolved before it was computed")
                self.metrics.stage_seconds.labels(kind.value, "preprocess").observe(time.monotonic() - started)
                return preprocessing.result()
            finally:
                gone.set()
                if not preprocessing.done():
                    preprocessing.cancel()  # a decoder process whose caller is gone is killed


def _positions_in_request(kinds: Sequence[InputKind]) -> list[int]:
    """Each item's position among the request's items that wait for the same workers (texts for
    the text threads, all other kinds for the decoder processes)."""
    counts = {True: 0, False: 0}
    positions = []
    for kind in kinds:
        text = kind is InputKind.TEXT
        positions.append(counts[text])
        counts[text] += 1
    return positions


def _retrieve(future: asyncio.Future[torch.Tensor]) -> None:
    """Mark a finished future's exception as seen (asyncio logs unseen ones as errors)."""
    if not future.cancelled():
        future.exception()
