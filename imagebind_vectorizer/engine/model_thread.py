"""The one thread that runs the model. It asks the scheduler what to advance, runs one step of it
(an encoder's stem, one trunk block, or its head), and hands finished items back to their callers'
event loops. Between two steps the scheduler may choose other work: that is how a text query runs
in the middle of an image batch, and how shutdown stops a long forward at its next block."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import torch

from imagebind_vectorizer.engine.metrics import EngineMetrics
from imagebind_vectorizer.engine.scheduler import Job, Scheduler, Task

log = logging.getLogger(__name__)


class Stepper(Protocol):
    """A model forward run one step at a time (`Embedder.start_rows`)."""

    steps: int
    done_steps: int

    @property
    def done(self) -> bool: ...

    def step(self) -> None: ...

    def result(self) -> torch.Tensor: ...


StartForward = Callable[[Hashable, torch.Tensor], Stepper]


class ModelThread:
    def __init__(self, scheduler: Scheduler, start_forward: StartForward, metrics: EngineMetrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.scheduler = scheduler
        self.lock = threading.Condition()  # guards the scheduler; the event loop takes it briefly
        self._start_forward = start_forward
        self._metrics = metrics
        self._clock = clock
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="model", daemon=True)
        #: set while the thread waits with nothing it could run (tests wait for it)
        self.idle = threading.Event()
        self._last: Task | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop after the current step (at most one block of one forward); wait for that up to
        `timeout` (the thread is a daemon: a step stuck longer does not hold the process)."""
        with self.lock:
            self._stopped = True
            self.lock.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # Called from the event loop ---------------------------------------------------------------
    def ready(self, job: Job, inputs: torch.Tensor) -> None:
        with self.lock:
            self.scheduler.ready(job, inputs, self._clock())
            self.lock.notify_all()

    def drop(self, job: Job) -> None:
        with self.lock:
            self.scheduler.drop(job)
            self.lock.notify_all()

    def abandon(self, error: BaseException) -> int:
        """Fail every admitted item with `error` now; the forward in progress stops at its next
        step. Returns how many items were abandoned."""
        with self.lock:
            jobs = self.scheduler.abandon_all()
            self.lock.notify_all()
        for job in jobs:
            _deliver(job, error=error)
        return len(jobs)

    # The thread -------------------------------------------------------------------------------
    def _next(self) -> tuple[Task, list[torch.Tensor] | None] | None:
        with self.lock:
            while not self._stopped:
                choice = self.scheduler.next(self._clock())
                if isinstance(choice, Task):
                    if self._last is not None and choice is not self._last and self._last.forward is not None \
                            and not self._last.forward.done and self._last in self.scheduler.open_tasks():
                        self._metrics.preemptions.labels(str(self._last.kind)).inc()
                    self._last = choice
                    # the slices' inputs are read under the lock: a caller may leave right after
                    self.idle.clear()
                    return choice, (choice.inputs() if choice.forward is None else None)
                self.idle.set()
                self.lock.wait(choice)
        return None

    def _run(self) -> None:
        while (chosen := self._next()) is not None:
            task, inputs = chosen
            try:
                if inputs is not None:
                    self._begin(task, inputs)
                started = time.perf_counter()
                with torch.inference_mode():
                    task.forward.step()
                    # the copy to the CPU waits for a GPU's queued kernels: timed with the last step
                    outputs = task.forward.result().cpu() if task.forward.done else None
                took = time.perf_counter() - started
            except Exception as exc:  # a model fault fails this batch only, never the thread
                log.exception("model call failed for a %s batch of %d rows", task.kind, task.rows)
                with self.lock:
                    failed = self.scheduler.fail(task)
                for job in failed:
                    _deliver(job, error=exc)
                continue
            with self.lock:
                self.scheduler.stepped(task, took, task.forward.done_steps / task.forward.steps)
                complete = self.scheduler.finish(task, outputs, self._clock()) if outputs is not None else []
            if outputs is not None:
                self._metrics.stage_seconds.labels(str(task.kind), "forward").observe(task.seconds)
            for job in complete:
                _deliver(job, value=torch.cat(job.outputs()))

    def _begin(self, task: Task, inputs: list[torch.Tensor]) -> None:
        kind = str(task.kind)
        now = self._clock()
        for job, _, _ in task.slices:
            if job.queued_at is not None:
                self._metrics.stage_seconds.labels(kind, "queue").observe(now - job.queued_at)
        self._metrics.batch_rows.labels(kind).observe(task.rows)
        self._metrics.batch_items.labels(kind).observe(len({id(job) for job, _, _ in task.slices}))
        task.forward = self._start_forward(task.kind, inputs[0] if len(inputs) == 1 else torch.cat(inputs))


def _deliver(job: Job, *, value: Any = None, error: BaseException | None = None) -> None:
    """Resolve the job's future on its event loop (from any thread)."""
    target = job.payload
    if target is None:
        return
    loop, future = target

    def resolve() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(resolve)


def attach(job: Job, loop: asyncio.AbstractEventLoop) -> asyncio.Future[torch.Tensor]:
    """A future on `loop` that resolves with the job's per-row outputs."""
    future: asyncio.Future[torch.Tensor] = loop.create_future()
    # Its outcome may arrive when nobody waits any more (abandoned at shutdown while its caller was
    # being cancelled): mark an error as seen, or asyncio logs one error per item.
    future.add_done_callback(lambda done: None if done.cancelled() else done.exception())
    job.payload = (loop, future)
    return future
