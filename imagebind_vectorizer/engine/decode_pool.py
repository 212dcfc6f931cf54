"""Media decoding in worker processes, so that no input can take the server down.

FFmpeg and Pillow are large C libraries fed with bytes from the network; they cannot be proven safe.
Every non-text item is preprocessed in one of a few worker processes, forked from a forkserver that
has the decoders imported (a worker starts in milliseconds, and never inherits the threads of the
process that runs the model). A worker that crashes (SIGSEGV), runs past its CPU-time or wall-clock
limit, or reaches its memory cap fails its own item with an `InputError` - HTTP 400 /
INVALID_ARGUMENT, because the input is what made the decoder fail and sending it again would fail
again - and is replaced; the server lives on. A worker whose caller is gone (cancelled, past its
deadline) or whose pool is closing is killed at once: no decoding outlives its request.

Text stays in process: the tokenizer is pure Python and bounds its own work (preprocess/text.py)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import math
import mmap
import multiprocessing
import multiprocessing.util
import os
import pickle
import resource
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch

from imagebind_vectorizer.errors import DeadlineExceededError, InputError, NotReadyError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions, check_item

log = logging.getLogger(__name__)

#: what the forkserver imports once, so that each worker starts with the decoders loaded
PRELOAD = ["imagebind_vectorizer.preprocess.dispatch"]
#: the function workers run, as "module:name" (tests substitute one that can crash on demand)
DEFAULT_PREPROCESS = "imagebind_vectorizer.preprocess:preprocess"
START_TIMEOUT_S = 120.0  # the first start also starts the forkserver, which imports torch
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}


@dataclass(frozen=True)
class DecodeLimits:
    """What one item may cost in a worker."""

    cpu_s: float = 60.0  # CPU time (all of the worker's threads)
    wall_s: float = 120.0  # wall-clock time from hand-over to result
    memory_mb: int = 2048  # address space beyond what a fresh worker holds


#: a Unix socket's path holds at most 107 bytes on Linux (sun_path)
SOCKET_PATH_MAX = 107
#: what multiprocessing appends to the temp dir for the forkserver's socket: /pymp-XXXXXXXX/listener-XXXXXXXX
SOCKET_SUFFIX = len("/pymp-12345678/listener-12345678")


def decoder_context() -> multiprocessing.context.BaseContext:
    """The forkserver context, with the decoders preloaded (set before the forkserver first starts;
    it is one per process and shared by every pool)."""
    _short_socket_dir()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _short_socket_dir() -> None:
    """Python 3.11 puts the forkserver's socket under $TMPDIR however deep it is, and a deep one (a
    CI job's, a test's) then fails every start with "AF_UNIX path too long". In that case give
    multiprocessing a directory under /tmp (removed at exit, as its own would be). The directory is
    multiprocessing's per-process setting, which it reads from this private dict."""
    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    if config.get("tempdir") or len(tempfile.gettempdir()) + SOCKET_SUFFIX <= SOCKET_PATH_MAX:
        return
    config["tempdir"] = path = tempfile.mkdtemp(prefix="pymp-", dir="/tmp")
    multiprocessing.util.Finalize(None, shutil.rmtree, args=(path,), kwargs={"ignore_errors": True},
                                  exitpriority=-100)


class DecodePool:
    """At most `size` items decode at once, each in its own worker process."""

    def __init__(self, size: int, limits: DecodeLimits | None = None, *,
                 preprocess: str = DEFAULT_PREPROCESS) -> None:
        self.size = max(1, size)
        self.limits = limits or DecodeLimits()
        self._preprocess = preprocess
        self._slots = asyncio.Semaphore(self.size)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._io = ThreadPoolExecutor(self.size * 2, thread_name_prefix="decode-io")
        self._closed = False
        self.replaced = 0  # workers lost to a fault, a limit or a cancelled item
        self.started = 0  # workers started, ever

    @property
    def workers(self) -> int:
        """Worker processes alive now (idle or busy)."""
        return len(self._all)

    async def warm(self, samples: list[tuple[InputKind, bytes]], options: PreprocessOptions) -> list[torch.Tensor]:
        """Start every worker now and decode `samples` in them (their rows, in order), so that the
        first request finds them running: a worker's first start also starts the forkserver, which
        imports torch (seconds), and each decoder's first call loads its codecs."""
        loop = asyncio.get_running_loop()
        workers = await asyncio.gather(*(self._checkout(loop) for _ in range(self.size - len(self._idle))))
        self._idle.extend(workers)
        return [await self.preprocess(kind, item, options) for kind, item in samples]

    async def preprocess(self, kind: InputKind, item: bytes | str, options: PreprocessOptions, *,
                         deadline: float | None = None) -> torch.Tensor:
        """One item -> its (clips, ...) tensor, computed in a worker."""
        check_item(kind, item, options)  # the cheap checks here, before the bytes travel
        payload = item.encode() if isinstance(item, str) else bytes(item)
        loop = asyncio.get_running_loop()
        async with self._slots:
            worker = await self._checkout(loop)
            reusable: bool | None = None  # None while the worker may still be busy with the item
            try:
                rows = await loop.run_in_executor(self._io, worker.call, kind, payload, options, deadline)
                reusable = True
                return rows
            except _ItemFailed as exc:
                reusable = exc.keep
                raise InputError(exc.message, reason=exc.reason) from None
            except (InputError, DeadlineExceededError, NotReadyError):
                reusable = False  # the worker died or was stopped; `call` has reaped it
                raise
            finally:
                if reusable and not self._closed:
                    self._idle.append(worker)
                else:
                    self._retire(worker, busy=reusable is None)

    def close(self) -> None:
        """Kill every worker, busy ones included, and take no more work."""
        self._closed = True
        for worker in list(self._all):
            self._all.discard(worker)
            worker.kill(closing=True)
            if worker in self._idle:
                worker.reap()
        self._idle.clear()
        self._io.shutdown(wait=False, cancel_futures=True)

    async def _checkout(self, loop: asyncio.AbstractEventLoop) -> _Worker:
        if self._closed:
            raise NotReadyError("the server is shutting down")
        if self._idle:
            return self._idle.pop()
        starting = loop.run_in_executor(self._io, _Worker, self._preprocess, self.limits)
        self.started += 1
        try:
            worker = await asyncio.shield(starting)
        except asyncio.CancelledError:  # keep the worker for the next item rather than leak it
            starting.add_done_callback(lambda f: None if f.cancelled() or f.exception() else self._adopt(f.result()))
            raise
        self._all.add(worker)
        return worker

    def _adopt(self, worker: _Worker) -> None:
        if self._closed:
            worker.kill()
            worker.reap()
        else:
            self._all.add(worker)
            self._idle.append(worker)

    def _retire(self, worker: _Worker, *, busy: bool) -> None:
        """Drop a worker. A busy one (its caller is gone) is killed now; the thread waiting on its
        pipe sees it die and reaps it."""
        self._all.discard(worker)
        self.replaced += 1
        worker.kill()
        if not busy:
            with contextlib.suppress(RuntimeError):  # the executor is shut down: close() reaps
                self._io.submit(worker.reap)


class _Worker:
    """One worker process, the parent's end of its pipe (small messages) and a shared memory file
    both map (the item's bytes in, its tensor out: one copy each way, where a pipe took dozens of
    round trips for a video's 18 MB). `call` and `reap` run in one I/O thread at a time; `kill`
    may come from any thread."""

    def __init__(self, preprocess: str, limits: DecodeLimits) -> None:
        context = decoder_context()
        self.limits = limits
        self.stopped: str | None = None  # why we killed it: "cancelled" or "closing"
        self.conn, child = context.Pipe(duplex=True)
        self.exchange = _Exchange(os.memfd_create("imagebind-decoder", os.MFD_CLOEXEC))
        os.ftruncate(self.exchange.fd, _EXCHANGE_BYTES)  # sparse: pages are used as items touch them
        self.process = context.Process(target=_worker_main, name="decoder", daemon=True,
                                       args=(child, reduction.DupFd(self.exchange.fd), preprocess, limits))
        self.process.start()
        child.close()
        if not self.conn.poll(START_TIMEOUT_S):
            self.kill()
            self.reap()
            raise RuntimeError("a decoder worker did not start")
        self.conn.recv_bytes()  # "ready"

    def call(self, kind: InputKind, item: bytes, options: PreprocessOptions, deadline: float | None) -> torch.Tensor:
        """Blocking round trip: the item's rows, or InputError / DeadlineExceededError."""
        limits = self.limits
        give_up = time.monotonic() + limits.wall_s
        if deadline is not None:
            give_up = min(give_up, deadline)
        try:
            self.exchange.write(item)
            self.conn.send_bytes(pickle.dumps((kind, options, len(item)), protocol=pickle.HIGHEST_PROTOCOL))
            if not self.conn.poll(max(0.0, give_up - time.monotonic())):
                self.kill()
                self.reap()
                if deadline is not None and give_up == deadline:
                    raise DeadlineExceededError("the deadline passed while the item was being decoded")
                raise InputError(f"decoding this {kind.value} input took longer than {limits.wall_s:g} s",
                                 reason="too_slow")
            header = pickle.loads(self.conn.recv_bytes())
            if header[0] == "error":
                _, message, reason, keep = header
                raise _ItemFailed(message, reason, keep)
            _, dtype, shape = header
            rows = torch.from_numpy(self.exchange.read(np.dtype(dtype), shape))
            self.exchange.shrink(_EXCHANGE_BYTES)
            return rows
        except (EOFError, OSError, pickle.UnpicklingError):
            error = self._death(kind)
            self.reap()
            raise error from None

    def _death(self, kind: InputKind) -> InputError | NotReadyError:
        """The error for a worker that died mid-item, from how it died."""
        self.process.join(5)
        code = self.process.exitcode
        limits = self.limits
        if self.stopped == "closing":
            return NotReadyError("the server is shutting down")  # type: ignore[return-value]
        if code == -signal.SIGXCPU:
            return InputError(f"decoding this {kind.value} input needed more than {limits.cpu_s:g} s of CPU time",
                              reason="too_complex")
        if code == -signal.SIGKILL:  # the kernel's OOM killer (ours is only sent to callers that are gone)
            return InputError(f"decoding this {kind.value} input was stopped: it may need more than the "
                              f"{limits.memory_mb} MiB a decoder may use", reason="too_large")
        how = f"signal {signal.Signals(-code).name}" if code is not None and -code in CRASH_SIGNALS \
            else f"exit status {code}"
        log.warning("decoder worker died", extra={"fields": {"kind": kind.value, "how": how}})
        return InputError(f"the {kind.value} decoder crashed on this input ({how})", reason="decoder_crashed")

    def kill(self, *, closing: bool = False) -> None:
        self.stopped = self.stopped or ("closing" if closing else "cancelled")
        with contextlib.suppress(ProcessLookupError, ValueError, AssertionError):
            if self.process.exitcode is None:
                os.kill(self.process.pid, signal.SIGKILL)

    def reap(self) -> None:
        self.conn.close()
        self.exchange.close()
        with contextlib.suppress(ValueError, AssertionError):
            self.process.join(5)
            self.process.close()


class _ItemFailed(InputError):
    """A bad item the worker reported; `keep` says whether the worker can take another."""

    def __init__(self, message: str, reason: str, keep: bool) -> None:
        super().__init__(message, reason=reason)
        self.keep = keep


# The worker side ----------------------------------------------------------------------------------
def _worker_main(conn: Connection, exchange_fd: reduction.DupFd, preprocess_path: str, limits: DecodeLimits) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server handles Ctrl-C, then stops us
    torch.set_num_threads(1)  # one item per worker: intra-op threads would only contend
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash is reported, not dumped
    module, name = preprocess_path.split(":")
    preprocess: Callable[..., torch.Tensor] = getattr(importlib.import_module(module), name)
    exchange = _Exchange(exchange_fd.detach())
    limit_memory(limits.memory_mb)
    conn.send_bytes(b"ready")
    while True:
        try:
            header = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the pool is gone
        kind, options, size = pickle.loads(header)
        item = exchange.read_bytes(size)
        limit_cpu(limits.cpu_s)
        array = None
        try:
            rows = preprocess(kind, item if kind is not InputKind.TEXT else item.decode(), options)
            array = rows.contiguous().numpy()
            reply: tuple[Any, ...] = ("ok", str(rows.dtype).removeprefix("torch."), tuple(array.shape))
        except InputError as exc:
            if _memory_ran_out(exc):
                reply = ("error", _OUT_OF_MEMORY.format(kind=kind.value, mb=limits.memory_mb), "too_large", False)
            else:
                reply = ("error", exc.message, exc.reason, True)
        except MemoryError:
            reply = ("error", _OUT_OF_MEMORY.format(kind=kind.value, mb=limits.memory_mb), "too_large", False)
        if array is not None:
            exchange.write(memoryview(array).cast("B"))
        conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        del item, array
        if reply[0] == "error" and not reply[3]:
            return  # a worker that ran out of memory may be left in any state: the pool starts another
        release_memory()


_OUT_OF_MEMORY = "decoding this {kind} input needs more than the {mb} MiB a decoder may use"
#: the shared exchange file's usual size: a video's tensor (18 MB) fits; bigger items grow it
_EXCHANGE_BYTES = 24 * 1024 * 1024


class _Exchange:
    """The memory file both sides map: mapped once, remapped only when its size changed (a fresh
    mapping per item would fault in every page of a video's 18 MB again)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map: mmap.mmap | None = None

    def _mapped(self, at_least: int) -> mmap.mmap:
        size = os.fstat(self.fd).st_size
        if size < at_least:
            os.ftruncate(self.fd, at_least)
            size = at_least
        if self._map is None or len(self._map) != size:
            if self._map is not None:
                self._map.close()
            self._map = mmap.mmap(self.fd, size)
        return self._map

    def write(self, data: bytes | memoryview) -> None:
        """Put `data` at the start of the file, growing it if needed."""
        if len(data):
            self._mapped(len(data))[: len(data)] = data

    def read_bytes(self, size: int) -> bytes:
        return self._mapped(size)[:size] if size else b""

    def read(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A copy of the array at the start of the file."""
        count = math.prod(shape)
        array = np.empty(shape, dtype)
        if count:
            view = np.frombuffer(self._mapped(count * dtype.itemsize), dtype, count)
            array.reshape(-1)[:] = view
            del view
        return array

    def shrink(self, size: int) -> None:
        """Give back what a huge item grew the file to (the other side remaps when it sees the size)."""
        if os.fstat(self.fd).st_size > 2 * size:
            if self._map is not None:
                self._map.close()
                self._map = None
            os.ftruncate(self.fd, size)

    def close(self) -> None:
        """Unmap and close, once: a second os.close of the same number would close whatever the
        process opened under it since (a client's socket: its connection cut, or answers for one
        client written to another)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def limit_memory(megabytes: int) -> None:
    """Cap the address space at what the worker maps now plus `megabytes`: allocations beyond
    fail (MemoryError, or an FFmpeg/torch allocation error) instead of growing the server."""
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    cap = mapped + megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def limit_cpu(seconds: float) -> None:
    """SIGXCPU (which ends the worker) once this item has used `seconds` of CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(used + seconds), resource.RLIM_INFINITY))


def _memory_ran_out(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "Cannot allocate memory" in str(exc):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def release_memory() -> None:
    """Hand freed heap back to the system between items (glibc keeps it otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
