"""The scheduler on an injected clock and injected costs: which work runs next across kinds
(cheap work first, deadlines kept), preemption between steps, starvation, batches across
requests, admission in time, and callers that leave. No model and no threads: a simulated model
thread advances the clock."""

from __future__ import annotations

import contextlib
import math

import pytest

from imagebind_vectorizer.engine.costs import CostModel
from imagebind_vectorizer.engine.scheduler import PACE_BOUNDS, STRETCH, Job, Priority, Scheduler, Task
from imagebind_vectorizer.errors import InputError, OverloadedError

TEXT_S, IMAGE_S = 0.05, 3.0  # seconds per row, at batch 1
STEPS = 10  # steps per forward (stem, 8 blocks, head)


class Rows:
    """Stands in for a (rows, ...) tensor: slicing keeps the row labels."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.shape = (len(labels),)

    def __getitem__(self, s: slice) -> Rows:
        return Rows(self.labels[s])


def costs(max_batch: int = 32, text_batches: bool = True) -> CostModel:
    model = CostModel(max_batch)
    model.observe("image", 1, IMAGE_S)
    model.observe("image", 2, 2 * IMAGE_S)  # compute-bound: no gain from batching
    model.observe("video", 1, IMAGE_S)
    model.observe("text", 1, TEXT_S)
    if text_batches:
        model.observe("text", 32, 2 * TEXT_S)  # memory-bound: a batch of 32 costs two rows
    return model


def scheduler(**kw: object) -> Scheduler:
    options = {"budget_s": 40.0, "max_rows": 256, "max_wait_s": 0.005, "costs": costs()} | kw
    return Scheduler(**options)  # type: ignore[arg-type]


def admit(s: Scheduler, kind: str, now: float, *, rows: int = 1, priority: Priority = Priority.DEFAULT,
          label: str | None = None) -> Job:
    job = s.admit([(kind, rows)], priority, now)[0]
    s.ready(job, Rows([f"{label or kind}:{i}" for i in range(rows)]), now)
    return job


class ModelThread:
    """Advances the clock by each step's share of the task's true cost, as the engine's model
    thread would, and records what ran. `lost`: the share of a step's time lost again outside the
    model's own timing (the event loop, decoders, other processes on the same cores), which the
    cost model cannot see. `jitter`: each call's time varies by up to this share around its cost
    (deterministically), as measured times do, so the learned costs move all the time."""

    def __init__(self, s: Scheduler, now: float = 0.0, text_batches: bool = True, lost: float = 0.0,
                 jitter: float = 0.0) -> None:
        self.s, self.now, self.text_batches, self.lost, self.jitter = s, now, text_batches, lost, jitter
        self.factors: dict[Task, float] = {}  # each call's share of its cost, drawn when it starts
        self.steps: list[Task] = []
        self.finished: list[tuple[float, Job]] = []

    def true_seconds(self, task: Task) -> float:
        per_row = {"text": TEXT_S, "image": IMAGE_S, "video": IMAGE_S}[str(task.kind)]
        if task.kind == "text" and self.text_batches:
            return TEXT_S * (1 + task.rows / 32)
        return per_row * task.rows

    def step(self) -> Task | None:
        task = self.s.next(self.now)
        if task is None or isinstance(task, float):
            return None
        if task.forward is None:
            task.forward = 0
            self.factors[task] = 1 + self.jitter * math.sin(len(self.factors) + 1)
        task.forward += 1
        took = self.true_seconds(task) * self.factors[task] / STEPS
        self.now += took * (1 + self.lost)
        self.s.stepped(task, took, task.forward / STEPS)
        self.steps.append(task)
        if task.forward == STEPS:
            outputs = Rows([label for rows in task.inputs() for label in rows.labels])
            for job in self.s.finish(task, outputs, self.now):
                self.finished.append((self.now, job))
        return task

    def run_until_idle(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if self.step() is None:
                return
        raise AssertionError("never idle")


def test_a_text_admitted_during_an_image_runs_at_the_next_step_and_the_image_resumes() -> None:
    s = scheduler()
    thread = ModelThread(s)
    image = admit(s, "image", 0.0)
    for _ in range(3):
        thread.step()
    image_task = thread.steps[-1]
    text = admit(s, "text", thread.now)
    thread.run_until_idle()
    order = [task.kind for task in thread.steps]
    assert order == ["image"] * 3 + ["text"] * STEPS + ["image"] * (STEPS - 3)
    assert all(task is image_task for task in thread.steps if task.kind == "image")  # resumed, not restarted
    assert [job for _, job in thread.finished] == [text, image]
    assert text.outputs()[0].labels == ["text:0"] and image.outputs()[0].labels == ["image:0"]


def test_cheap_work_goes_first_while_every_deadline_still_holds() -> None:
    """A text goes ahead of an image however long the image has waited, as long as the image can
    still complete within the budget it was admitted under; once its slack is less than the text's
    cost, the image goes first and the text waits."""
    s = scheduler()  # budget 40 s
    image = admit(s, "image", 0.0)
    assert (image.deadline, s.rank(image)) == (40.0, (STRETCH[Priority.DEFAULT] * IMAGE_S, 0.0))
    # waited ten times its cost (an aging order would now put it first): 7 s of slack are left
    text = admit(s, "text", 30.0)
    thread = ModelThread(s, now=30.0)
    thread.step()
    assert thread.steps[-1].slices[0][0] is text
    thread.run_until_idle()
    assert [job for _, job in thread.finished] == [text, image]

    s = scheduler()
    image = admit(s, "image", 0.0)
    text = admit(s, "text", 36.97)  # the image has 0.03 s to spare: less than the text's 0.05 s
    thread = ModelThread(s, now=36.97)
    thread.step()
    assert thread.steps[-1].kind == "image"
    thread.run_until_idle()
    assert [job for _, job in thread.finished] == [image, text]
    assert thread.finished[0][0] <= image.deadline


def test_work_that_must_run_goes_in_deadline_order_and_cheap_work_resumes_after_it() -> None:
    """Three images whose slack ran out while texts kept coming run by deadline (not by rank: the
    query image ranks first), each within its own; the texts go first again as soon as they can."""
    s = scheduler(budget_s=12.0)
    first = admit(s, "image", 0.0, label="first")
    second = admit(s, "image", 0.5, label="second")
    query = admit(s, "image", 1.0, priority=Priority.QUERY, label="query")
    # 9 s of images before deadlines of 12, 12.5 and 13 s: the query image has 0.04 s to spare
    text = admit(s, "text", 3.96)
    thread = ModelThread(s, now=3.96)
    thread.run_until_idle()
    done = {job: t for t, job in thread.finished}
    assert [job for _, job in thread.finished] == [first, second, query, text]
    assert all(done[job] <= job.deadline for job in (first, second, query))

    s = scheduler(budget_s=12.0)
    first = admit(s, "image", 0.0, label="first")
    text = admit(s, "text", 3.96)
    thread = ModelThread(s, now=3.96)
    thread.step()  # one image alone has 5 s to spare: the text first
    assert [job for _, job in thread.finished] == [] and thread.steps[-1].kind == "text"


def test_a_cost_estimate_that_moves_does_not_reorder_items_of_one_kind() -> None:
    """An image admitted after the measured cost per image fell a little still goes after the
    images admitted before it (a rank fixed at admission would put it first)."""
    s = scheduler()
    first = admit(s, "image", 0.0, label="first")
    s.costs.observe("image", 1, 0.5 * IMAGE_S)
    second = admit(s, "image", 0.1, label="second")
    s.costs.observe("image", 1, 2.0 * IMAGE_S)
    text = admit(s, "text", 0.2)
    thread = ModelThread(s, now=0.2)
    thread.run_until_idle()
    assert [job for _, job in thread.finished] == [text, first, second]


def test_items_of_one_kind_keep_their_arrival_order_and_priority_moves_them() -> None:
    s = scheduler(costs=costs(text_batches=False))
    first, second = admit(s, "image", 0.0, label="a"), admit(s, "image", 0.1, label="b")
    query = admit(s, "image", 0.2, priority=Priority.QUERY, label="q")
    bulk_text = admit(s, "text", 0.3, priority=Priority.BULK)
    thread = ModelThread(s, now=0.3)
    thread.run_until_idle()
    # ranked by stretch x cost: the query image (1 x 3 s) before the bulk text (100 x 0.05 s),
    # before the default images (10 x 3 s), which keep their arrival order
    assert [job for _, job in thread.finished] == [query, bulk_text, first, second]


def test_no_starvation_under_a_constant_stream_of_cheap_work() -> None:
    """A new text every 40 ms, each taking 50 ms (and no gain from batching them): texts alone
    would keep the model busy for ever. The image still completes within the budget it was
    admitted under: texts go first only while it can still make its deadline."""
    for budget in (40.0, 10.0):
        s = scheduler(costs=costs(text_batches=False), max_rows=10_000, budget_s=budget)
        image = admit(s, "image", 0.0)
        thread = ModelThread(s, text_batches=False)
        next_text = 0.0
        while thread.now < budget + 20:
            while next_text <= thread.now:
                with contextlib.suppress(OverloadedError):  # texts alone fill the budget: some are refused
                    admit(s, "text", next_text)
                next_text += 0.04
            thread.step()
        finished = {job: t for t, job in thread.finished}
        assert image in finished, "the image starved"
        assert finished[image] <= image.deadline == budget
        texts = [job for job in finished if job.kind == "text"]
        before = [job for job in texts if finished[job] < finished[image]]
        assert len(before) > 0.8 * (budget - IMAGE_S) / TEXT_S  # cheap work went first while the image could wait
        assert any(finished[job] > finished[image] for job in texts)  # and the stream went on after it


def test_texts_during_an_import_wait_at_most_one_step_of_it() -> None:
    """The mixed-load scenario on an injected clock: ten images always in flight (each client
    sends its next one when the last is answered: 30 s of queue, within the 40-s budget) while one
    client sends a text, waits for the answer, pauses 0.5 s and sends the next. Each text waits at
    most for the image step that runs when it arrives; the images lose only the model time the texts
    themselves take, and every image completes within the budget. Each call's time varies by up to
    5%, so the learned cost per image moves between any two admissions."""
    s = scheduler(costs=costs(text_batches=False))
    thread = ModelThread(s, text_batches=False, jitter=0.05)
    text, next_text, clients = None, 0.0, 10  # image clients without an image in flight
    text_waits: list[float] = []
    image_times: list[float] = []
    refused = 0
    while thread.now < 600:
        while clients:  # a refused client tries again at the next step
            try:
                admit(s, "image", thread.now)
            except OverloadedError:
                refused += 1
                break
            clients -= 1
        if text is None and thread.now >= next_text:
            text = admit(s, "text", thread.now)
        before = len(thread.finished)
        if thread.step() is None:
            thread.now = next_text
        for done, job in thread.finished[before:]:
            if job is text:
                text_waits.append(done - job.admitted)
                text, next_text = None, done + 0.5
            else:
                image_times.append(done - job.admitted)
                clients += 1
    step = IMAGE_S / STEPS
    assert len(text_waits) > 500
    assert max(text_waits) <= TEXT_S + step + 1e-9
    text_share = len(text_waits) * TEXT_S / thread.now
    images_per_s = len(image_times) / thread.now
    assert images_per_s >= (1 - text_share) / IMAGE_S * 0.98
    assert max(image_times) <= 40.0


def test_a_lone_item_never_waits_for_a_batch_to_fill() -> None:
    s = scheduler(max_wait_s=10.0)
    admit(s, "text", 0.0)
    task = s.next(0.0)
    assert isinstance(task, Task) and task.rows == 1


def test_a_batch_that_pays_waits_briefly_for_items_being_preprocessed() -> None:
    s = scheduler(max_wait_s=0.005)
    admit(s, "text", 0.0, label="ready")
    preparing = s.admit([("text", 1)], Priority.DEFAULT, 0.0)[0]
    wait = s.next(0.001)
    assert isinstance(wait, float) and 0 < wait <= 0.005
    s.ready(preparing, Rows(["later:0"]), 0.002)
    task = s.next(0.002)
    assert isinstance(task, Task) and task.rows == 2
    # where batching does not pay (images), nothing waits for the second one
    s = scheduler(max_wait_s=10.0)
    admit(s, "image", 0.0)
    s.admit([("image", 1)], Priority.DEFAULT, 0.0)
    task = s.next(0.0)
    assert isinstance(task, Task) and task.rows == 1


def test_video_views_are_batched_across_requests_where_batching_pays() -> None:
    model = costs()
    model.observe("video", 32, 2 * IMAGE_S)  # a device where a batch of 32 views costs two
    s = scheduler(costs=model)
    first, second = admit(s, "video", 0.0, rows=15, label="v1"), admit(s, "video", 0.0, rows=15, label="v2")
    task = s.next(0.0)
    assert isinstance(task, Task) and task.rows == 30
    assert [(job, a, b) for job, a, b in task.slices] == [(first, 0, 15), (second, 0, 15)]


def test_batches_hold_at_most_max_batch_rows_and_split_an_item_across_them() -> None:
    s = scheduler(costs=costs(max_batch=8))
    video = admit(s, "video", 0.0, rows=15)
    thread = ModelThread(s)
    thread.run_until_idle()
    tasks = list(dict.fromkeys(thread.steps))
    assert all(task.rows <= 8 for task in tasks)
    assert sum(task.rows for task in tasks) == 15
    labels = [label for part in video.outputs() for label in part.labels]
    assert labels == [f"video:{i}" for i in range(15)]  # every view once, in order


def test_a_batch_takes_at_most_its_share_of_the_budget() -> None:
    """Images whose batches pay (1 s per row at 8 rows, 3 s alone) are batched, but no call may
    take more than a quarter of the 40-s budget: every item of a batch waits for its end."""
    model = CostModel(32)
    model.observe("image", 1, IMAGE_S)
    model.observe("image", 8, 8.0)
    s = scheduler(costs=model, budget_s=40.0)
    thread = ModelThread(s)
    thread.true_seconds = lambda task: float(task.rows)  # type: ignore[method-assign]
    for _ in range(30):
        admit(s, "image", 0.0)
    thread.run_until_idle()
    sizes = [task.rows for task in dict.fromkeys(thread.steps)]
    assert sum(sizes) == 30
    assert max(sizes) == 10  # 10 rows of 1 s: the share (32 would pay as well)
    assert min(sizes) > 1


def test_admission_is_by_expected_time_per_kind() -> None:
    """Images fill the budget (13 x 3 s = 39 s of 40); the 14th would complete after 42 s and is
    refused at once, while a text is admitted: the images are not due before it."""
    s = scheduler()
    for _ in range(13):
        s.admit([("image", 1)], Priority.DEFAULT, 0.0)
    with pytest.raises(OverloadedError, match=r"image queue is full.*42\.0 s.*40 s"):
        s.admit([("image", 1)], Priority.DEFAULT, 0.0)
    assert s.held_rows("image") == 13
    s.admit([("text", 1)], Priority.DEFAULT, 0.0)
    assert s.expected_wait("text", Priority.DEFAULT, 0.0) < 1.0
    assert s.expected_wait("image", Priority.DEFAULT, 0.0) > 40.0


def test_admission_counts_forward_passes_per_item_against_the_row_bound() -> None:
    s = scheduler(max_rows=32, costs=CostModel(32))  # nothing measured: the row bound alone
    s.admit([("video", 15), ("video", 15)], Priority.DEFAULT, 0.0)
    with pytest.raises(OverloadedError, match="video queue is full \\(30 of 32"):
        s.admit([("video", 15)], Priority.DEFAULT, 0.0)
    with pytest.raises(InputError, match="45 video forward passes"):
        s.admit([("video", 15)] * 3, Priority.DEFAULT, 0.0)
    for _ in range(10):
        s.admit([("audio", 3)], Priority.DEFAULT, 0.0)
    with pytest.raises(OverloadedError, match="audio queue is full \\(30 of 32"):
        s.admit([("audio", 3)], Priority.DEFAULT, 0.0)


def test_admission_learns_the_pace_of_real_time_over_predicted_time() -> None:
    """Images that take twice the model time the cost model measures make the pace approach 2,
    and admission then holds half as many: an item admitted last still completes within the
    budget. Short jobs teach nothing; one extreme job moves the pace by at most its bounded share."""
    s = scheduler()
    thread = ModelThread(s, lost=1.0)
    for _ in range(40):  # one image at a time: predicted 3 s, real 6 s
        admit(s, "image", thread.now)
        thread.run_until_idle()
    assert 2.0 <= s.pace("image") <= 2.1  # the ratio, 2, plus what is left of the spread while it rose from 1
    admitted = 0
    with pytest.raises(OverloadedError, match="image queue is full"):
        while True:
            admit(s, "image", thread.now)
            admitted += 1
    assert admitted == 6  # 6 x 6 s = 36 s fits 40 s; at pace 1 it would be 13 (78 s of real time)
    thread.run_until_idle()
    assert max(done - job.admitted for done, job in thread.finished[-admitted:]) <= 40.0
    assert s.expected_wait("image", Priority.DEFAULT, thread.now) == pytest.approx(IMAGE_S * s.pace("image"))

    before = s.pace("image")
    for _ in range(5):  # texts predicted 0.05 s that take 100 s: too short to count
        admit(s, "text", thread.now)
        thread.now += 100.0
        thread.run_until_idle()
    assert s.pace("image") == before
    job = admit(s, "image", thread.now)
    thread.now += 1000.0  # one image stuck 1000 s: its ratio counts as the upper bound, 4
    thread.run_until_idle()
    assert thread.finished[-1][1] is job
    assert 3.0 < s.pace("image") <= PACE_BOUNDS[1]
    for _ in range(30):  # and it is forgotten as regular images finish
        admit(s, "image", thread.now)
        thread.run_until_idle()
    assert s.pace("image") < 2.2


def test_each_kind_learns_its_own_pace() -> None:
    """Searches that waited long behind an import (ratio 4) must not make admission refuse the
    import's own items, whose predictions were right."""
    s = scheduler(costs=costs(text_batches=False))
    thread = ModelThread(s, text_batches=False)
    for _ in range(10):
        admit(s, "text", thread.now, rows=20)  # 1 s predicted
        thread.now += 10.0  # waited far longer than predicted
        thread.run_until_idle()
    assert s.pace("text") > 3.0
    assert s.pace("image") == 1.0
    for _ in range(13):  # 13 x 3 s = 39 s: all admitted, as before any text
        admit(s, "image", thread.now)


def test_admission_allows_for_the_spread_of_real_times() -> None:
    """Jobs whose real time is 1x or 2x their prediction in turn: admission allows for the slow
    ones (the pace is above the mean ratio of 1.5), so the last admitted completes within the budget
    even when it is a slow one."""
    s = scheduler()
    thread = ModelThread(s)
    for i in range(40):
        job = admit(s, "image", thread.now)
        thread.now += 0.0 if i % 2 else IMAGE_S  # every other one also waits its own time again
        thread.run_until_idle()
        assert thread.finished[-1][1] is job
    assert s.pace("image") > 1.5 + 0.5


def test_an_item_longer_than_the_budget_is_admitted_only_with_nothing_before_it() -> None:
    s = scheduler(budget_s=10.0)
    video = s.admit([("video", 15)], Priority.DEFAULT, 0.0)[0]  # 45 s alone: idle server
    with pytest.raises(OverloadedError):
        s.admit([("video", 15)], Priority.DEFAULT, 0.0)
    s.drop(video)
    assert s.idle
    s.admit([("video", 15)], Priority.DEFAULT, 0.0)


def test_a_caller_that_leaves_frees_its_place_at_once() -> None:
    s = scheduler()
    thread = ModelThread(s)
    gone = admit(s, "image", 0.0, label="gone")
    kept = admit(s, "image", 0.0, label="kept")
    thread.step()  # `gone` is in the running batch, `kept` waits
    s.drop(kept)
    assert s.held_rows("image") == 1
    s.drop(gone)
    assert s.idle and s.held_rows("image") == 0
    assert s.next(thread.now) is None and s.open_tasks() == []  # its batch is abandoned


def test_abandon_all_returns_every_live_job_once() -> None:
    s = scheduler()
    thread = ModelThread(s)
    running = admit(s, "image", 0.0)
    thread.step()
    waiting = admit(s, "image", 0.0)
    preparing = s.admit([("text", 1)], Priority.DEFAULT, 0.0)[0]
    assert set(s.abandon_all()) == {running, waiting, preparing}
    assert s.idle and s.next(thread.now) is None


def test_priority_parsing() -> None:
    assert Priority.parse(None) is Priority.DEFAULT and Priority.parse(" Query ") is Priority.QUERY
    with pytest.raises(InputError, match="query or bulk"):
        Priority.parse("urgent")


def test_check_refuses_what_admit_would_and_admits_nothing() -> None:
    s = scheduler()
    for _ in range(13):
        s.admit([("image", 1)], Priority.DEFAULT, 0.0)
    with pytest.raises(OverloadedError):
        s.check([("image", 1)], Priority.DEFAULT, 0.0)
    s.check([("text", 1)], Priority.DEFAULT, 0.0)
    assert s.held_rows("text") == 0 and s.held_rows("image") == 13
