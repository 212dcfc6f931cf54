"""What the one model thread runs next, across every input kind: the only place that knows what is
waiting. Pure bookkeeping (no threads, no torch); the engine calls it under its lock with the time.

Order. Cheap work first, while every admitted item can still keep its promise. Each item has a
*rank* — a stretch (from its priority, `STRETCH`) times its own expected cost, then its arrival —
and a *deadline* — its admission plus the queue time budget, the time admission promised it would
complete by. Between any two steps of a forward (stem, each block, head) the model thread advances
the work of lowest rank: a 5-word query (tens of milliseconds) admitted while an image batch
(seconds) runs goes at the image's next block boundary, and the image then resumes where it paused.
Items of one kind and priority keep their arrival order: a rank is computed when compared, from
the kind's current cost per row, so an estimate that moved between two admissions cannot put the
later one first. The guard: before cheap work goes ahead,
every item with an earlier deadline must still fit in its own — the work before it in
deadline order, plus the cheap work, at its kind's pace, within its deadline. Where one would not,
the work with the earliest deadline runs instead (earliest-deadline-first minimises the worst
lateness). So heavy work is never starved, even under a constant stream of cheap work — it
completes within the budget it was admitted under — and cheap work waits for heavy work only when
heavy work would otherwise break that promise. (An earlier order aged by waiting time instead: an
image that had waited ten times its cost went ahead of every new query, and with eight images in
flight on a 2-core CPU, half of them always had: queries waited seconds behind images that still
had twenty seconds to spare.)

Batches. A batch takes ready rows of one kind in rank order, as many as the learned cost curve
says still pay (`CostModel.batch_size`), and no more than take `MAX_BATCH_SHARE` of the budget
(every item of a batch waits for its end: eight ViT-H images on 2 CPU cores take 20 s); it waits
for rows still being preprocessed only when a bigger batch pays, and never longer than
`max_wait_s`. A lone item never waits.

Admission. A request is admitted when every item's expected completion (the work ranked before it,
plus its own) fits `budget_s`; an item that alone takes longer is admitted only with nothing
before it. `max_rows` per kind bounds the memory held by preprocessed inputs.

Pace. Expected times are the model's own compute; a job's real time from admission to its last row
also holds its upload and preprocessing, the hand-offs between steps, whatever else runs on the same
cores (the event loop, decoders, other processes) and cheaper work admitted after it that went
ahead, or a batch it had to wait for the end of. So each finished job's real time over the time
predicted at its admission feeds a running mean and deviation per kind, and the kind's *pace* —
the mean plus
`PACE_SPREAD` deviations, a ratio few jobs exceed — scales every prediction admission compares with
the budget: the budget bounds nearly every admitted item, not the typical one (without it, images
offered at 4x capacity on a 2-core VM were admitted with a p99 of 51-61 s for a 40-s budget).

Callers that leave (disconnect, cancel, deadline) are `drop`ped at once: their rows leave the
queue, and a batch whose items are all gone is abandoned at its next step."""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from imagebind_vectorizer.engine.costs import CostModel
from imagebind_vectorizer.errors import InputError, OverloadedError


class Priority(StrEnum):
    """A client's word on how urgent its request is (HTTP header / gRPC metadata `x-imagebind-priority`)."""

    QUERY = "query"  # someone waits for it: a search
    DEFAULT = "default"  # no word given: by cost alone (Weaviate sends none)
    BULK = "bulk"  # an import: throughput matters, latency does not

    @classmethod
    def parse(cls, value: str | None) -> Priority:
        if value is None or not value.strip():
            return cls.DEFAULT
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise InputError(f"priority must be query or bulk, got {value[:40]!r}", reason="priority",
                             field=PRIORITY_KEY) from None


#: the HTTP header and gRPC metadata key that carries a request's priority
PRIORITY_KEY = "x-imagebind-priority"
#: what an item's own expected cost is multiplied by to rank it: cheaper (or more urgent) work goes first
STRETCH = {Priority.QUERY: 1.0, Priority.DEFAULT: 10.0, Priority.BULK: 100.0}
#: forwards open at once (a paused forward keeps its activations in memory)
MAX_OPEN_TASKS = 4
#: the most of the queue time budget one model call may take
MAX_BATCH_SHARE = 0.25
#: weight of the newest finished job in the running pace
PACE_ALPHA = 0.2
#: jobs predicted shorter than this say too little about the pace (timer and hand-off noise)
PACE_MIN_PREDICTED_S = 0.5
#: the bounds of one job's ratio and of the pace: one job stuck behind a stall must not close admission
PACE_BOUNDS = (0.5, 4.0)
#: deviations of the ratio above its mean that admission allows for: the one-sided 99th percentile
#: of a normal spread, so that nearly every admitted item (p99) completes within the budget
PACE_SPREAD = 2.33


@dataclass
class _Pace:
    """The running mean and deviation of one kind's real-over-predicted ratio, and the pace from them."""

    mean: float = 1.0
    var: float = 0.0

    @property
    def value(self) -> float:
        low, high = PACE_BOUNDS
        return min(max(self.mean + PACE_SPREAD * self.var ** 0.5, low), high)

    def learn(self, ratio: float) -> None:
        delta = ratio - self.mean  # exponentially weighted mean and variance (West's incremental form)
        self.mean += PACE_ALPHA * delta
        self.var = (1 - PACE_ALPHA) * (self.var + PACE_ALPHA * delta * delta)


@dataclass(eq=False)
class Job:
    """One admitted item: preparing (being preprocessed), then queued, then computed by one or
    more tasks (a video's 15 views may be split across batches)."""

    kind: Hashable
    rows: int
    priority: Priority
    admitted: float
    weight: float  # its stretch times its rows: its rank is this times its kind's current seconds per row
    deadline: float  # when admission promised it would complete
    cost: float  # expected seconds of its own forward passes, when admitted
    predicted: float = 0.0  # expected seconds from admission to its last row (before the pace)
    inputs: Any = None  # the (rows, ...) model input once preprocessed
    queued_at: float | None = None
    handed: int = 0  # rows given to tasks
    computed: int = 0  # rows whose outputs came back
    parts: list[tuple[int, Any]] = field(default_factory=list)  # (first row, outputs of a slice)
    gone: bool = False  # its caller left, or it failed
    payload: Any = None  # the engine's own bookkeeping (the caller's future)

    @property
    def unassigned_cost(self) -> float:
        return self.cost * (self.rows - self.handed) / self.rows

    def outputs(self) -> list[Any]:
        """The slices' outputs in row order."""
        return [out for _, out in sorted(self.parts, key=lambda p: p[0])]


@dataclass(eq=False)
class Task:
    """One model call over rows of one kind, possibly paused between steps."""

    kind: Hashable
    slices: list[tuple[Job, int, int]]  # (job, first row, end row) in the order of the batch
    expected: float  # expected seconds of the whole call
    forward: Any = None  # the model thread's paused forward
    progress: float = 0.0  # share of its steps done
    seconds: float = 0.0  # its own compute time so far (not the time it was paused)

    @property
    def rows(self) -> int:
        return sum(stop - start for _, start, stop in self.slices)

    @property
    def live(self) -> bool:
        return any(not job.gone for job, _, _ in self.slices)

    @property
    def deadline(self) -> float:
        return min((job.deadline for job, _, _ in self.slices if not job.gone), default=float("inf"))

    @property
    def remaining(self) -> float:
        return self.expected * (1.0 - self.progress)

    def inputs(self) -> list[Any]:
        """Each slice's model input, to be concatenated in this order."""
        return [job.inputs[start:stop] for job, start, stop in self.slices]


class Scheduler:
    def __init__(self, costs: CostModel, *, budget_s: float, max_rows: int, max_wait_s: float,
                 max_open_tasks: int = MAX_OPEN_TASKS) -> None:
        self.costs = costs
        self.budget_s, self.max_rows, self.max_wait_s = budget_s, max_rows, max_wait_s
        self.max_open_tasks = max_open_tasks
        self._waiting: dict[Hashable, list[Job]] = {}  # jobs with rows not yet in a task, by rank
        self._held_rows: dict[Hashable, int] = {}  # rows admitted and not finished, per kind
        self._tasks: list[Task] = []  # open model calls, oldest first
        self._current: Task | None = None
        self._live_jobs = 0
        # per kind: a search's wait behind an import says nothing about the import's own pace
        self._paces: dict[Hashable, _Pace] = {}

    # State ------------------------------------------------------------------------------------
    @property
    def idle(self) -> bool:
        """Nothing admitted is unfinished."""
        return self._live_jobs == 0

    def held_rows(self, kind: Hashable) -> int:
        return self._held_rows.get(kind, 0)

    def queued_rows(self, kind: Hashable) -> int:
        """Rows preprocessed and waiting for a batch."""
        return sum(job.rows - job.handed for job in self._waiting.get(kind, []) if job.inputs is not None)

    def open_tasks(self) -> list[Task]:
        return list(self._tasks)

    def item_cost(self, kind: Hashable, rows: int) -> float:
        return rows * self.costs.row_seconds(kind)

    def rank(self, job: Job) -> tuple[float, float]:
        """The job's place in the order of cheap work first (ties: arrival), at today's costs."""
        return (job.weight * self.costs.row_seconds(job.kind), job.admitted)

    def task_rank(self, task: Task) -> tuple[float, float]:
        return min((self.rank(job) for job, _, _ in task.slices if not job.gone), default=(float("inf"), 0.0))

    def work_before(self, rank: tuple[float, float]) -> float:
        """Expected seconds of admitted work that runs before an item of `rank` (cheap work first)."""
        total = sum(task.remaining for task in self._tasks if self.task_rank(task) <= rank)
        for jobs in self._waiting.values():
            for job in jobs:  # sorted by rank
                if self.rank(job) > rank:
                    break
                total += job.unassigned_cost
        return total

    def expected_wait(self, kind: Hashable, priority: Priority, now: float, rows: int = 1) -> float:
        """Expected seconds until an item of `kind` admitted now would be computed."""
        cost = self.item_cost(kind, rows)
        return (self.work_before((STRETCH[priority] * cost, now)) + cost) * self.pace(kind)

    # Admission --------------------------------------------------------------------------------
    def admit(self, items: Sequence[tuple[Hashable, int]], priority: Priority, now: float) -> list[Job]:
        """Jobs for (kind, rows) items, all or none. Raises InputError when the request can never
        fit, OverloadedError when it does not fit now."""
        jobs = self._plan(items, priority, now)
        for job in jobs:
            # within a kind, (weight, arrival) orders as the rank does whatever the cost per row
            bisect.insort(self._waiting.setdefault(job.kind, []), job, key=lambda j: (j.weight, j.admitted))
            self._held_rows[job.kind] = self.held_rows(job.kind) + job.rows
        self._live_jobs += len(jobs)
        return jobs

    def check(self, items: Sequence[tuple[Hashable, int]], priority: Priority, now: float) -> None:
        """Raise what `admit` would raise now, admitting nothing (a transport's cheap pre-check
        before it reads or decodes a body)."""
        self._plan(items, priority, now)

    def _plan(self, items: Sequence[tuple[Hashable, int]], priority: Priority, now: float) -> list[Job]:
        need: dict[Hashable, int] = {}
        for kind, rows in items:
            need[kind] = need.get(kind, 0) + rows
        for kind, rows in need.items():
            if rows > self.max_rows:
                raise InputError(f"the request holds {rows} {kind} forward passes, more than the queue "
                                 f"size of {self.max_rows}; split it into smaller requests", reason="too_large")
            if self.held_rows(kind) + rows > self.max_rows:
                raise OverloadedError(f"the {kind} queue is full ({self.held_rows(kind)} of {self.max_rows} "
                                      "forward passes waiting); retry later")
        stretch = STRETCH[priority]
        jobs = []
        for kind, rows in items:
            cost = self.item_cost(kind, rows)
            jobs.append(Job(kind, rows, priority, now, stretch * rows, now + self.budget_s, cost))
        own = 0.0
        for job in sorted(jobs, key=self.rank):
            own += job.cost
            job.predicted = self.work_before(self.rank(job)) + own
            pace = self.pace(job.kind)
            completion, alone = job.predicted * pace, own * pace
            # alone over the budget: admitted only with nothing before it, and promised its own time
            if not self.idle and completion > max(self.budget_s, alone):
                raise OverloadedError(
                    f"the {job.kind} queue is full: this request would complete in about {completion:.1f} s, "
                    f"over the queue time budget of {self.budget_s:g} s; retry later")
            job.deadline = now + max(self.budget_s, alone)
        return jobs

    # Life of a job ----------------------------------------------------------------------------
    def ready(self, job: Job, inputs: Any, now: float) -> None:
        """The job's model input is ready: its rows may join a batch."""
        if job.gone:
            return
        rows = int(inputs.shape[0]) if hasattr(inputs, "shape") else len(inputs)
        if rows != job.rows:  # the per-kind table promised a different count: trust the tensor
            self._held_rows[job.kind] += rows - job.rows
            job.cost = job.cost * rows / job.rows
            job.rows = rows
        job.inputs, job.queued_at = inputs, now

    def drop(self, job: Job) -> None:
        """The job's caller is gone (or it failed): forget it now. Its open tasks are abandoned
        once none of their jobs is live."""
        if job.gone:
            return
        job.gone = True
        job.inputs = None
        waiting = self._waiting.get(job.kind, [])
        if job in waiting:
            waiting.remove(job)
        self._held_rows[job.kind] -= job.rows
        self._live_jobs -= 1
        self._tasks = [task for task in self._tasks if task.live]
        if self._current is not None and not self._current.live:
            self._current = None

    # The model thread -------------------------------------------------------------------------
    def next(self, now: float) -> Task | float | None:
        """The task to advance by one step now; or the seconds until a batch still filling is
        ready; or None when there is nothing to do."""
        best: tuple[tuple[float, float], int, Task | Hashable] | None = None
        for order, task in enumerate(self._tasks):
            tie = -1 if task is self._current else order  # on a tie, keep running what runs
            rank = self.task_rank(task)
            if best is None or (rank, tie) < best[:2]:
                best = (rank, tie, task)
        soonest: float | None = None
        if len(self._tasks) < self.max_open_tasks:
            for kind, jobs in self._waiting.items():
                queued = [job for job in jobs if job.inputs is not None]
                if not queued:
                    continue
                filling_until = self._filling_until(kind, jobs, queued)
                if filling_until is not None and filling_until > now:
                    soonest = filling_until if soonest is None else min(soonest, filling_until)
                    continue
                candidate = (self.rank(queued[0]), len(self._tasks), kind)
                if best is None or candidate[:2] < best[:2]:
                    best = candidate
        if best is None:
            return None if soonest is None else soonest - now
        chosen = self._urgent(best[2], now) or best[2]
        if isinstance(chosen, Task):
            self._current = chosen
        elif isinstance(chosen, Job):
            self._current = self._new_task(chosen.kind, first=chosen)
        else:
            self._current = self._new_task(chosen)
        return self._current

    def _urgent(self, preferred: Task | Hashable, now: float) -> Task | Job | None:
        """What must run instead of `preferred` (the cheapest work) so that no item with an earlier
        deadline breaks it: the runnable work with the earliest deadline; None when `preferred` may go."""
        if isinstance(preferred, Task):
            own, deadline, planned = preferred.remaining, preferred.deadline, {}
        else:
            slices = self._plan_batch(preferred)
            own = self.costs.seconds(preferred, sum(stop - start for _, start, stop in slices))
            deadline = min(job.deadline for job, _, _ in slices)
            planned = {job: stop - start for job, start, stop in slices}
        # (deadline, seconds, kind, what would run it) for all other admitted work with an earlier deadline
        work: list[tuple[float, float, Hashable, Task | Job | None]] = [
            (task.deadline, task.remaining, task.kind, task)
            for task in self._tasks if task is not preferred and task.deadline < deadline]
        for jobs in self._waiting.values():
            for job in jobs:
                rows = job.rows - job.handed - planned.get(job, 0)
                if rows and job.deadline < deadline:
                    work.append((job.deadline, job.cost * rows / job.rows, job.kind,
                                 job if job.inputs is not None else None))
        if not work:
            return None
        work.sort(key=lambda w: w[0])
        before = 0.0
        for due, seconds, kind, _ in work:
            before += seconds
            if (before + own) * self.pace(kind) > due - now:
                break
        else:
            return None
        can_open = len(self._tasks) < self.max_open_tasks
        for _, _, _, runs in work:  # earliest deadline first, among what can run now
            if isinstance(runs, Task) or (isinstance(runs, Job) and can_open):
                return runs
        return None

    def _filling_until(self, kind: Hashable, jobs: list[Job], queued: list[Job]) -> float | None:
        """When a batch of `kind` still filling must start anyway; None when it is ready now
        (full enough, or nothing else is on its way, or batching would not pay)."""
        ready_rows = sum(job.rows - job.handed for job in queued)
        wanted = self.costs.preferred_size(kind, self.costs.max_batch)
        on_the_way = any(job.inputs is None for job in jobs)
        if ready_rows >= wanted or not on_the_way:
            return None
        first = min(job.queued_at for job in queued if job.queued_at is not None)
        return first + self.max_wait_s

    def _plan_batch(self, kind: Hashable, first: Job | None = None) -> list[tuple[Job, int, int]]:
        """The slices (job, first row, end row) of the next batch of `kind`, in rank order (after
        `first`, when one must run now): as many rows as pay, within the batch's share of the budget."""
        queued = [job for job in self._waiting[kind] if job.inputs is not None]
        if first is not None:
            queued.remove(first)
            queued.insert(0, first)
        size = self.costs.batch_size(kind, sum(job.rows - job.handed for job in queued))
        while size > 1 and self.costs.seconds(kind, size) > MAX_BATCH_SHARE * self.budget_s:
            size -= 1
        slices: list[tuple[Job, int, int]] = []
        taken = 0
        for job in queued:
            if taken == size:
                break
            count = min(job.rows - job.handed, size - taken)
            slices.append((job, job.handed, job.handed + count))
            taken += count
        return slices

    def _new_task(self, kind: Hashable, first: Job | None = None) -> Task:
        slices = self._plan_batch(kind, first)
        jobs = self._waiting[kind]
        for job, _, stop in slices:
            job.handed = stop
            if job.handed == job.rows:
                jobs.remove(job)
        task = Task(kind, slices, self.costs.seconds(kind, sum(stop - start for _, start, stop in slices)))
        self._tasks.append(task)
        return task

    def stepped(self, task: Task, seconds: float, progress: float) -> None:
        """One step of `task` ran for `seconds`; `progress` of its steps are done."""
        task.seconds += seconds
        task.progress = progress

    def finish(self, task: Task, outputs: Any, now: float) -> list[Job]:
        """The task's call finished at `now` with (rows, ...) `outputs` in batch order: learn its
        cost, hand each job its rows, learn the pace from the jobs now complete. Returns those
        (every row computed, caller still there)."""
        self.costs.observe(task.kind, task.rows, task.seconds)
        self._close(task)
        complete = []
        offset = 0
        for job, start, stop in task.slices:
            count = stop - start
            if not job.gone:
                job.parts.append((start, outputs[offset:offset + count]))
                job.computed += count
                if job.computed == job.rows:
                    complete.append(job)
            offset += count
        for job in complete:
            self._learn_pace(job, now)
            self._retire(job)
        return complete

    def pace(self, kind: Hashable) -> float:
        """What admission multiplies the predictions for `kind` by (see Pace above); 1.0 until learned."""
        learned = self._paces.get(kind)
        return learned.value if learned is not None else 1.0

    def _learn_pace(self, job: Job, now: float) -> None:
        if job.predicted < PACE_MIN_PREDICTED_S:
            return
        low, high = PACE_BOUNDS
        ratio = min(max((now - job.admitted) / job.predicted, low), high)
        self._paces.setdefault(job.kind, _Pace()).learn(ratio)

    def fail(self, task: Task) -> list[Job]:
        """The task's call raised: its live jobs fail with it (returned, and forgotten here)."""
        self._close(task)
        failed = [job for job, _, _ in task.slices if not job.gone]
        for job in dict.fromkeys(failed):
            self.drop(job)
        return list(dict.fromkeys(failed))

    def abandon_all(self) -> list[Job]:
        """Every live job, forgotten (shutdown past its grace period): the caller fails them."""
        jobs = {job for jobs in self._waiting.values() for job in jobs}
        jobs |= {job for task in self._tasks for job, _, _ in task.slices}
        live = [job for job in jobs if not job.gone]
        for job in live:
            self.drop(job)
        self._tasks.clear()
        self._current = None
        return live

    def _close(self, task: Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if self._current is task:
            self._current = None

    def _retire(self, job: Job) -> None:
        job.gone = True  # finished: nothing may touch it again
        job.inputs = None
        self._held_rows[job.kind] -= job.rows
        self._live_jobs -= 1
