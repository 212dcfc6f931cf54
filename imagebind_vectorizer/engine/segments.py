"""Long files through the engine: a decoder worker process cuts windows (preprocess/segments,
run by segment_worker.py; a thread of ours waits on it), each
window's inputs go to the engine as ordinary items (so they batch across windows and requests),
and segments come back in order as soon as each is done.

Memory is bounded end to end: the decoder hands over at most DECODED_AHEAD windows before it
waits, and at most `in_flight` windows are being embedded; a caller that stops reading stops the
decoder. Cancelling the iteration stops the decoder thread at its next window and drops the
windows that were queued for the model.

Disk too: an upload is spooled (`Segmenter.spool`) to a file that has no name from the start (its
space is freed when the stream ends, or the process dies), in `segment_spool_dir`, and only when
that folder has room for the bytes announced, counting what the other streams have reserved."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import BinaryIO

import numpy as np
import torch

from imagebind_vectorizer.engine.decode_pool import DecodeLimits
from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.engine.segment_worker import SegmentWorker
from imagebind_vectorizer.errors import InputError, OverloadedError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess.segments import (
    Segment,
    SegmentInput,
    Source,
    SourceLimits,
    WindowSpec,
    iter_segments,
)
from imagebind_vectorizer.settings import Settings

#: windows the decoder may have finished before the model has started on them
DECODED_AHEAD = 2
#: how long a window waits between tries when its kind's queue is full
ROOM_RETRY_S = 0.05
_END = object()


class Segmenter:
    """Segment streams over one engine, at most `settings.max_segment_streams` at a time."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.default_spec = settings.window_spec()
        self.limits = SourceLimits(settings.max_segment_source_seconds, settings.max_segment_source_bytes)
        self.max_streams = settings.max_segment_streams
        self.decode = DecodeLimits(cpu_s=settings.decode_cpu_s, wall_s=settings.decode_wall_s,
                                   memory_mb=settings.decode_memory_mb)
        self.active = 0
        self.workers: set[SegmentWorker] = set()  # decoder processes running now
        self.spool_dir = settings.segment_spool_dir or tempfile.gettempdir()
        self.spool_reserved = 0  # bytes the streams now spooling may still write
        self._pool = ThreadPoolExecutor(self.max_streams, thread_name_prefix="segments")

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one of the stream places for a whole file, or refuse at once."""
        if self.active >= self.max_streams:
            raise OverloadedError(f"{self.active} segment streams are running, the most this server takes "
                                  f"(max_segment_streams); retry later")
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    @contextlib.contextmanager
    def spool(self, size: int) -> Iterator[Spool]:
        """A file to spool an upload of at most `size` bytes to, or OverloadedError at once when the
        spool folder has not that much room left (other streams' reservations counted)."""
        free = shutil.disk_usage(self.spool_dir).free - self.spool_reserved
        if size > free:
            raise OverloadedError(f"the spool folder has room for {max(free, 0)} more bytes, not the {size} this "
                                  "file needs (segment_spool_dir); retry later")
        self.spool_reserved += size
        try:
            with tempfile.TemporaryFile(dir=self.spool_dir, prefix="imagebind-segments-") as file:
                yield Spool(file)
        finally:
            self.spool_reserved -= size

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def segments(self, source: Source | Spool, kind: InputKind, spec: WindowSpec | None = None, *,
                       deadline: float | None = None, first_index: int = 0) -> AsyncIterator[Segment]:
        """The file's segments in order. Windows before `first_index` are decoded (the stream must
        be read through) but not embedded or returned. Raises InputError for a file that cannot
        be segmented, or after the last good segment when the rest of the file is lost."""
        spec = spec or self.default_spec
        embedder = self.engine.embedder
        assert embedder is not None
        embedder.require(kind)  # a video's soundtrack is embedded only where the audio encoder is loaded
        loop = asyncio.get_running_loop()
        decoded: asyncio.Queue[object] = asyncio.Queue(DECODED_AHEAD)
        stop = threading.Event()
        options = embedder.options

        def hand_over(item: object) -> bool:
            future = asyncio.run_coroutine_threadsafe(decoded.put(item), loop)
            while True:
                try:
                    future.result(timeout=0.1)
                    return True
                except FutureTimeout:
                    if stop.is_set():
                        future.cancel()
                        return False

        if isinstance(source, str | os.PathLike):
            worker: SegmentWorker | None = SegmentWorker(os.fspath(source), kind, spec, options, self.limits,
                                                         self.decode)
        elif isinstance(source, Spool):
            worker = SegmentWorker(source.file.fileno(), kind, spec, options, self.limits, self.decode)
        else:
            worker = None
        if worker is not None:
            self.workers.add(worker)

        def decode() -> None:
            # A path or a spool is decoded in a worker process; a file object (the Python API's
            # kind of source) in this thread.
            windows = worker.windows() if worker is not None else iter_segments(
                source, kind, spec, options, self.limits)  # type: ignore[arg-type]  # not a Spool here
            try:
                for item in windows:
                    if stop.is_set() or not hand_over(item):
                        return
                hand_over(_END)
            except BaseException as exc:
                hand_over(exc)
            finally:
                with contextlib.suppress(Exception):
                    windows.close()

        decoder = loop.run_in_executor(self._pool, decode)
        rows_per_window = 15 if kind is InputKind.VIDEO else 3
        in_flight = max(2, math.ceil(self.settings.max_batch_size / rows_per_window) + 1)
        pending: deque[tuple[SegmentInput, dict[InputKind, asyncio.Task[np.ndarray]]]] = deque()
        try:
            finished = False
            while not finished or pending:
                while not finished and len(pending) < in_flight:
                    item = await decoded.get() if not pending else _nowait(decoded)
                    if item is None:
                        break
                    if item is _END:
                        finished = True
                    elif isinstance(item, BaseException):
                        for done, tasks in pending:  # the good segments before the failure still go out
                            yield await self._finish(done, tasks)
                        pending.clear()
                        raise item
                    else:
                        assert isinstance(item, SegmentInput)
                        if item.window.index >= first_index:
                            tasks = {part: asyncio.ensure_future(self._embed(part, rows, deadline))
                                     for part, rows in item.rows.items() if part.encoder in embedder.model.enabled}
                            item.rows = {}  # the tasks hold the tensors; drop them when the model is done
                            pending.append((item, tasks))
                if pending:
                    head, tasks = pending.popleft()
                    yield await self._finish(head, tasks)
        finally:
            stop.set()
            if worker is not None:
                worker.kill()  # wakes the decoder thread that waits on the worker's pipe
            for _, tasks in pending:
                for task in tasks.values():
                    task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*(t for _, tasks in pending for t in tasks.values()), return_exceptions=True)
            with contextlib.suppress(BaseException):
                while not decoded.empty():
                    decoded.get_nowait()
                await asyncio.wait_for(asyncio.shield(decoder), 5.0)
            self.workers.discard(worker)  # type: ignore[arg-type]

    async def _embed(self, kind: InputKind, rows: torch.Tensor, deadline: float | None) -> np.ndarray:
        while True:
            try:
                return await self.engine.embed_rows(kind, rows, deadline=deadline)
            except OverloadedError:
                await asyncio.sleep(ROOM_RETRY_S)  # a long file waits its turn rather than failing

    @staticmethod
    async def _finish(item: SegmentInput, tasks: dict[InputKind, asyncio.Task[np.ndarray]]) -> Segment:
        segment = Segment(item.window, errors=dict(item.errors))
        for part, task in tasks.items():
            try:
                segment.vectors[part] = await task
            except InputError as exc:
                segment.errors[part] = exc
        return segment


class Spool:
    """An upload being written to its spool file (no name on disk; see Segmenter.spool)."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file

    def write(self, chunk: bytes) -> None:
        """Called off the event loop."""
        with _full_disk_is_overload():
            self.file.write(chunk)

    def finish(self) -> None:
        """Flush: the decoder reads the file through a descriptor of its own."""
        with _full_disk_is_overload():
            self.file.flush()


@contextlib.contextmanager
def _full_disk_is_overload() -> Iterator[None]:
    """A full disk is the server's state, not the caller's fault: RESOURCE_EXHAUSTED, retry later."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise OverloadedError(f"the spool folder is full ({exc.strerror}); retry later") from None
        raise


def _nowait(queue: asyncio.Queue[object]) -> object | None:
    try:
        return queue.get_nowait()
    except asyncio.QueueEmpty:
        return None
