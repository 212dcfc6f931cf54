"""A long file's window decoder in a worker process (see decode_pool.py for why decoding runs in
worker processes at all): the worker runs `iter_segments` over the file and hands the windows back
one at a time, each when the parent asks for it, so at most one window waits in the pipe and a
parent that stops asking stops the decoding. The same limits as for single items hold per window
(CPU seconds and wall-clock seconds for each window, memory for the whole worker); a worker that
crashes or runs past a limit ends the file with an `InputError` after the windows it delivered."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
from collections.abc import Iterator
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import Any

from imagebind_vectorizer.engine.decode_pool import (
    CRASH_SIGNALS,
    START_TIMEOUT_S,
    DecodeLimits,
    decoder_context,
    limit_cpu,
    limit_memory,
    release_memory,
)
from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions
from imagebind_vectorizer.preprocess.segments import SegmentInput, SourceLimits, WindowSpec


class SharedFile:
    """An open file the worker reads through a descriptor of its own, handed over when the worker
    starts (as multiprocessing hands over a Pipe's ends): the gRPC service's spool, which has no
    name on disk. Handed over at start, not through multiprocessing's resource sharer, which would
    keep a copy open, and the file's space taken, if the worker never came to collect it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return _inherited_file, (reduction.DupFd(self.fd),)  # pickled while the worker is started


def _inherited_file(duplicate: Any) -> SharedFile:
    return SharedFile(duplicate.detach())


class SegmentWorker:
    """One file's decoder process (the file: a path, or an open descriptor of this process that the
    worker gets a copy of). `windows()` runs in one thread; `kill()` may come from any."""

    def __init__(self, source: str | int, kind: InputKind, spec: WindowSpec, options: PreprocessOptions,
                 limits: SourceLimits, decode: DecodeLimits) -> None:
        self.kind = kind
        self.decode = decode
        self.killed = False
        context = decoder_context()
        self.conn, child = context.Pipe(duplex=True)
        target = SharedFile(source) if isinstance(source, int) else source
        self.process = context.Process(target=_worker_main, args=(child, target, kind, spec, options, limits, decode),
                                       name="segment-decoder", daemon=True)
        self.process.start()
        child.close()

    def windows(self) -> Iterator[SegmentInput]:
        """The file's windows in order; raises InputError for a bad file, a crash or a limit."""
        delivered = 0
        try:
            if not self.conn.poll(START_TIMEOUT_S):
                raise RuntimeError("a segment decoder worker did not start")
            self.conn.recv_bytes()  # "ready"
            while True:
                self.conn.send_bytes(b"more")
                if not self.conn.poll(self.decode.wall_s):
                    self.kill()
                    raise InputError(f"decoding window {delivered} took longer than {self.decode.wall_s:g} s",
                                     reason="too_slow")
                reply = pickle.loads(self.conn.recv_bytes())
                if reply[0] == "end":
                    return
                if reply[0] == "error":
                    raise InputError(reply[1], reason=reply[2])
                delivered += 1
                yield reply[1]
        except (EOFError, OSError, pickle.UnpicklingError):
            if self.killed:
                return
            raise self._death(delivered) from None
        finally:
            self.kill()
            self.reap()

    def _death(self, delivered: int) -> InputError:
        self.process.join(5)
        code = self.process.exitcode
        where = f"after {delivered} window(s)"
        if code == -signal.SIGXCPU:
            return InputError(f"decoding one window needed more than {self.decode.cpu_s:g} s of CPU time ({where})",
                              reason="too_complex")
        if code == -signal.SIGKILL:
            return InputError(f"the decoder was stopped {where}: it may need more than the "
                              f"{self.decode.memory_mb} MiB a decoder may use", reason="too_large")
        how = f"signal {signal.Signals(-code).name}" if code is not None and -code in CRASH_SIGNALS \
            else f"exit status {code}"
        return InputError(f"the {self.kind.value} decoder crashed {where} ({how})", reason="decoder_crashed")

    def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(ProcessLookupError, ValueError, AssertionError):
            if self.process.exitcode is None:
                os.kill(self.process.pid, signal.SIGKILL)

    def reap(self) -> None:
        self.conn.close()
        with contextlib.suppress(ValueError, AssertionError):
            self.process.join(5)
            self.process.close()


def _worker_main(conn: Connection, source: str | SharedFile, kind: InputKind, spec: WindowSpec,
                 options: PreprocessOptions, limits: SourceLimits, decode: DecodeLimits) -> None:
    import resource

    import torch

    from imagebind_vectorizer.preprocess.segments import iter_segments

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit_memory(decode.memory_mb)
    conn.send_bytes(b"ready")
    path = os.fdopen(source.fd, "rb") if isinstance(source, SharedFile) else source
    windows = iter_segments(path, kind, spec, options, limits)
    while True:
        try:
            if conn.recv_bytes() != b"more":
                return
        except (EOFError, OSError):
            return  # the parent is gone
        limit_cpu(decode.cpu_s)  # each window gets the CPU time one item may take
        try:
            item = next(windows, None)
            reply: tuple[object, ...] = ("end",) if item is None else ("window", item)
        except InputError as exc:
            reply = ("error", exc.message, exc.reason)
        except MemoryError:
            reply = ("error", f"decoding needs more than the {decode.memory_mb} MiB a decoder may use", "too_large")
        conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        if reply[0] != "window":
            return
        del item, reply
        release_memory()
