"""Progress on the terminal, one way for every command: a bar (tqdm) for work that counts up, and a
ticking elapsed-time line for a wait that cannot count (a query while Weaviate vectorizes its input).

Both are drawn on stderr only when it is a terminal and `--no-progress` was not given, so pipes, logs
and CI output stay clean; the results themselves go to stdout. tqdm is imported on first use, so a
command's `--help` stays light."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any


def add_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars or elapsed-time lines (they are drawn only on a terminal anyway)")


def enabled(args: argparse.Namespace | None = None, stream: IO[str] | None = None) -> bool:
    """Draw progress? Only on a terminal, and not when the command got --no-progress."""
    if args is not None and getattr(args, "no_progress", False):
        return False
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def bar(total: int | None, desc: str, *, unit: str = "it", show: bool = True, **options: Any) -> Any:
    """A tqdm bar on stderr (a disabled one, which costs nothing, when `show` is false)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not show, dynamic_ncols=True,
                **{"file": sys.stderr, **options})


@contextlib.contextmanager
def _repeating(action: Callable[[], None], interval: float, name: str, *, at_once: bool) -> Iterator[None]:
    """Run `action` every `interval` seconds in a thread of its own while the block runs (first at
    once when `at_once`); the thread is joined before the block's exit goes on."""
    stop = threading.Event()

    def run() -> None:
        if at_once:
            action()
        while not stop.wait(interval):
            action()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def ticking(progress_bar: Any, interval: float = 1.0) -> Iterator[None]:
    """Redraw `progress_bar` every `interval` seconds while the block runs, so its elapsed time
    moves during one long step (an insert batch that Weaviate vectorizes object by object)."""
    if getattr(progress_bar, "disable", True):
        yield
        return
    with _repeating(progress_bar.refresh, interval, "progress-tick", at_once=False):
        yield


@contextlib.contextmanager
def waiting(desc: str, *, show: bool = True, stream: IO[str] | None = None,
            interval: float = 0.2) -> Iterator[None]:
    """A spinner with the elapsed seconds ("⠋ searching Media (nearVideo) 12 s") while the block runs;
    the line is erased when it ends, so the result printed next stands alone."""
    if not show:
        yield
        return
    out = stream or sys.stderr
    started = time.monotonic()
    frames = itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")

    def draw() -> None:
        out.write(f"\r{next(frames)} {desc} {time.monotonic() - started:.0f} s\033[K")
        out.flush()

    try:
        with _repeating(draw, interval, "progress-spinner", at_once=True):
            yield
    finally:
        out.write("\r\033[K")
        out.flush()
