"""Files the server re-reads when they change on disk (API keys, TLS certificates): how a change is
noticed, shared by auth.py and tls.py. Files are looked at on use (a request, a handshake), at most
once per RELOAD_INTERVAL_S, never polled in the background."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: a changed file is noticed within this many seconds of the next request or handshake
RELOAD_INTERVAL_S = 1.0

#: what identifies one version of a file: device, inode, size, modification time (following the
#: symlinks a Kubernetes Secret volume swaps, so its atomic update is a change)
FileState = tuple[int, int, int, int]


def file_states(paths: Sequence[Path]) -> tuple[FileState, ...]:
    return tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in (p.stat() for p in paths))


class Throttle:
    """`due()` is true at most once per interval, for one caller at a time (callers come from the
    event loop and from gRPC's handshake threads)."""

    def __init__(self, interval_s: float = RELOAD_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._next = clock() + interval_s

    def due(self) -> bool:
        if self._clock() < self._next:
            return False
        with self._lock:
            if self._clock() < self._next:
                return False
            self._next = self._clock() + self.interval_s
            return True
