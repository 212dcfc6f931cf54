"""The engine's promises about time, on the tiny model: a text runs between two blocks of an image
and both vectors stay exact; readiness waits for the warm-up; callers that leave free their place
at once; past the shutdown grace a forward stops at its next block; admission is by expected time
and counts each kind's forward passes; video views are batched across requests; batches never
exceed --max-batch-size (a video over it is split across calls); a query-priority item goes first;
a lone item never waits.

The model thread is held inside a trunk block by a gate (tests/engine/support.py) and costs are
injected where the test needs a given throughput curve: nothing here depends on timing."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import pytest

from imagebind_vectorizer.engine.costs import CostModel
from imagebind_vectorizer.engine.engine import Engine, State
from imagebind_vectorizer.engine.scheduler import Priority
from imagebind_vectorizer.errors import DeadlineExceededError, NotReadyError, OverloadedError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.engine.support import FixedCosts, gate

T = TypeVar("T")
IMAGE, TEXT, AUDIO, VIDEO = InputKind.IMAGE, InputKind.TEXT, InputKind.AUDIO, InputKind.VIDEO


@pytest.fixture(scope="module")
def settings(tiny_settings: Settings) -> Settings:
    return tiny_settings.replace(workers=1, warmup=False, cache_size=0)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [media.image_bytes("PNG", 48 + 8 * i, 40, seed=i) for i in range(4)]


def cpu_like() -> FixedCosts:
    """Costs as on a CPU: media compute-bound (a batch of 2 costs two), text cheap and batching well.
    An image is a minute (huge on a slow CPU): the costliest work here, whatever a loaded test
    machine measures; use with `patient()`, whose budget admits such work (and keeps every deadline
    far away: these tests are about the order of cheap work first)."""
    per_row = {"text": 0.01, "image": 60.0, "video": 1.0, "audio": 0.3, "depth": 0.05, "thermal": 0.1, "imu": 0.05}
    return FixedCosts(32, lambda kind, rows: per_row[kind] * (rows if kind != "text" else 1 + rows / 32),
                      {kind: (1, 2) for kind in per_row})


def patient(settings: Settings) -> Settings:
    """A queue budget that admits minutes of `cpu_like` work (the tests here are about order)."""
    return settings.replace(queue_budget_s=3600.0)


def run_engine(settings: Settings, embedder: Embedder, work: Callable[[Engine], Awaitable[T]],
               costs: CostModel | None = None) -> tuple[T, Engine]:
    async def main() -> T:
        try:
            await engine.start()
            return await work(engine)
        finally:
            await engine.close()

    engine = Engine(settings, embedder=embedder, costs=costs)
    return asyncio.run(main()), engine


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "condition not met in time"
        await asyncio.sleep(0.005)


def sample(engine: Engine, name: str, **labels: str) -> float:
    return engine.metrics.registry.get_sample_value(name, labels) or 0.0


def started(engine: Engine, kind: InputKind, item: bytes | str, order: list[str] | None = None, label: str = "",
            **options: Any) -> asyncio.Future[list[np.ndarray]]:
    task = asyncio.ensure_future(engine.embed(kind, [item], **options))
    if order is not None:
        task.add_done_callback(lambda _: order.append(label or kind.value))
    return task


def test_a_text_runs_between_two_blocks_of_an_image_and_both_vectors_are_exact(
        settings: Settings, tiny_embedder: Embedder, images: list[bytes]) -> None:
    order: list[str] = []

    async def work(engine: Engine) -> tuple[list[np.ndarray], list[np.ndarray], dict[int, int]]:
        with gate(tiny_embedder.model, "vision") as held:
            image = started(engine, IMAGE, images[0], order)
            await asyncio.to_thread(held.wait_entered)  # the image's forward is inside block 0
            text = started(engine, TEXT, "a query typed during an import", order)
            await until(lambda: engine.scheduler.queued_rows(TEXT) == 1)
            held.release()
            return await image, await text, held.calls

    (image, text, calls), engine = run_engine(patient(settings), tiny_embedder, work, cpu_like())
    assert order == ["text", "image"]  # the image started first, the text finished first
    assert sample(engine, "imagebind_preemptions_total", kind="image") == 1
    assert calls == {0: 1, 1: 1}  # the image resumed where it paused: no block ran twice
    assert np.array_equal(image[0], tiny_embedder.embed("image", [images[0]])[0])
    assert np.array_equal(text[0], tiny_embedder.embed("text", ["a query typed during an import"])[0])


def test_ready_only_after_one_timed_warm_up_forward_per_kind(settings: Settings, tiny_embedder: Embedder) -> None:
    async def main() -> tuple[State, bool, Engine]:
        engine = Engine(settings.replace(warmup=True), embedder=tiny_embedder)
        with gate(tiny_embedder.model, "vision") as held:
            starting = asyncio.ensure_future(engine.start())
            await asyncio.to_thread(held.wait_entered)  # a warm-up forward is running
            state, ready = engine.state, engine.ready
            held.release()
            await starting
        await engine.close()
        return state, ready, engine

    state, ready, engine = asyncio.run(main())
    assert state is State.STARTING and not ready
    assert all(engine.costs.known(kind) for kind in InputKind)  # every kind timed, the cost model seeded
    assert sample(engine, "imagebind_model_seconds_per_row", kind="video") > 0
    cold = Engine(settings, embedder=tiny_embedder)
    asyncio.run(cold.start())
    asyncio.run(cold.close())
    assert not any(cold.costs.known(kind) for kind in InputKind)  # --no-warmup: nothing measured
    assert cold._decode_pool.started == 0


def test_the_decoder_processes_are_running_before_ready(settings: Settings, tiny_embedder: Embedder,
                                                        images: list[bytes]) -> None:
    """A first image must not pay for starting the forkserver and a decoder (seconds: it imports
    torch): with the warm-up on, every decoder runs before ready, and a first image starts none."""
    async def work(engine: Engine) -> tuple[int, int, int]:
        before = engine._decode_pool.started, engine._decode_pool.workers
        await engine.embed(IMAGE, [images[0]])
        return (*before, engine._decode_pool.started)

    (started_at_ready, alive_at_ready, started_after), _ = run_engine(
        settings.replace(warmup=True, workers=2), tiny_embedder, work)
    assert started_at_ready == alive_at_ready == 2
    assert started_after == 2


def test_items_whose_caller_left_leave_the_queue_at_once(settings: Settings, tiny_embedder: Embedder,
                                                         images: list[bytes]) -> None:
    async def work(engine: Engine) -> list[int]:
        held_rows = []
        with gate(tiny_embedder.model, "vision") as held:
            first = started(engine, IMAGE, images[0])
            await asyncio.to_thread(held.wait_entered)
            cancelled = started(engine, IMAGE, images[1])
            await until(lambda: engine.scheduler.queued_rows(IMAGE) == 1)
            held_rows.append(engine.scheduler.held_rows(IMAGE))
            cancelled.cancel()  # a disconnected HTTP client / cancelled RPC cancels its handler
            await asyncio.gather(cancelled, return_exceptions=True)
            held_rows.append(engine.scheduler.held_rows(IMAGE))
            expiring = started(engine, IMAGE, images[2], deadline=time.monotonic() + 0.3)
            with pytest.raises(DeadlineExceededError):
                await asyncio.wait_for(expiring, 30)  # while the model is still held
            held_rows.append(engine.scheduler.held_rows(IMAGE))
            held.release()
            await first
        return held_rows

    held_rows, engine = run_engine(settings, tiny_embedder, work)
    assert held_rows == [2, 1, 1]
    assert sample(engine, "imagebind_batch_items_count", kind="image") == 1  # only the first was computed
    assert sample(engine, "imagebind_queue_depth", kind="image") == 0


def test_past_the_grace_period_work_is_abandoned_and_the_forward_stops_at_its_next_block(
        settings: Settings, tiny_embedder: Embedder, images: list[bytes]) -> None:
    async def work(engine: Engine) -> tuple[bool, dict[int, int]]:
        with gate(tiny_embedder.model, "vision", block=0) as held:
            image = started(engine, IMAGE, images[0])
            waiting = started(engine, IMAGE, images[1])
            await asyncio.to_thread(held.wait_entered)
            finished = await engine.drain(0.05)
            for task in (image, waiting):  # answered now, while the model is still held
                with pytest.raises(NotReadyError, match="grace period"):
                    await asyncio.wait_for(task, 5)
            engine._model.idle.clear()
            held.release()
            assert await asyncio.to_thread(engine._model.idle.wait, 30)
            return finished, dict(held.calls)

    (finished, calls), _ = run_engine(settings, tiny_embedder, work)
    assert not finished
    assert calls == {0: 1}  # block 1 never ran: the forward stopped at its next step


def test_admission_is_by_expected_time_and_counts_each_kinds_forward_passes(
        settings: Settings, tiny_embedder: Embedder, images: list[bytes]) -> None:
    """Injected speeds: an image row 10 s, an audio clip 2 s (an audio file is 3: 6 s), a video
    view 1 s (a video is 15: 15 s); the budget is 15 s."""
    per_row = {"image": 10.0, "audio": 2.0, "video": 1.0, "text": 0.001, "depth": 1, "thermal": 1, "imu": 1}
    costs = FixedCosts(32, lambda kind, rows: per_row[kind] * rows, {kind: (1,) for kind in per_row})
    wav = media.audio_bytes("wav", seconds=0.5)
    video = media.video_bytes(seconds=1.0, fps=4, width=64, height=48)
    budget = settings.replace(queue_budget_s=15.0)

    async def work(engine: Engine) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with gate(tiny_embedder.model, "vision") as held:
            first = started(engine, IMAGE, images[0])
            await asyncio.to_thread(held.wait_entered)
            # ahead of it: the first image's 3 steps still to run (of stem, 2 blocks, head) = 7.5 s;
            # its own 10 s: 17.5 s
            with pytest.raises(OverloadedError, match=r"image queue is full.*17\.5 s.*15 s"):
                await engine.embed(IMAGE, [images[1]])
            engine.check_admission({TEXT: 1})  # a text still fits: the image is not due before it
            engine.check_admission()  # so the transports' pre-check lets bodies in
            with pytest.raises(OverloadedError):
                engine.check_admission({IMAGE: 1})
            audio = [started(engine, AUDIO, wav) for _ in range(2)]  # 6 s each: 12 s
            await until(lambda: engine.scheduler.held_rows(AUDIO) == 6)
            with pytest.raises(OverloadedError, match="audio queue is full"):
                await engine.embed(AUDIO, [wav])
            seen["audio_rows"] = engine.scheduler.held_rows(AUDIO)
            seen["expected_wait_text"] = sample(engine, "imagebind_expected_wait_seconds", kind="text")
            held.release()
            await asyncio.gather(first, *audio)
        # an item longer than the budget by itself (a 15 s video) is admitted with nothing before it
        with gate(tiny_embedder.model, "vision") as held:
            one = started(engine, VIDEO, video)
            await asyncio.to_thread(held.wait_entered)
            seen["video_rows"] = engine.scheduler.held_rows(VIDEO)
            with pytest.raises(OverloadedError, match="video queue is full"):
                await engine.embed(VIDEO, [video])
            held.release()
            await one
        return seen

    seen, _ = run_engine(budget, tiny_embedder, work, costs)
    assert seen["audio_rows"] == 2 * AUDIO.facts.rows_per_item == 6
    assert seen["video_rows"] == VIDEO.facts.rows_per_item == 15
    assert 0 < seen["expected_wait_text"] < 1


def test_video_views_are_batched_across_requests_where_batching_pays(
        settings: Settings, tiny_embedder: Embedder, images: list[bytes]) -> None:
    flat = FixedCosts(32, lambda kind, rows: 1.0, {kind.value: (1, 32) for kind in InputKind})  # batching pays
    videos = [media.video_bytes(seconds=1.0, fps=4, width=64, height=48, seed=seed) for seed in (1, 2)]

    async def work(engine: Engine) -> list[np.ndarray]:
        with gate(tiny_embedder.model, "vision") as held:
            blocker = started(engine, IMAGE, images[0])
            await asyncio.to_thread(held.wait_entered)
            both = [started(engine, VIDEO, video) for video in videos]  # two requests
            await until(lambda: engine.scheduler.queued_rows(VIDEO) == 30)
            held.release()
            await blocker
            return [(await task)[0] for task in both]

    vectors, engine = run_engine(settings, tiny_embedder, work, flat)
    rows_le_24 = sample(engine, "imagebind_batch_rows_bucket", kind="video", le="24.0")
    rows_le_32 = sample(engine, "imagebind_batch_rows_bucket", kind="video", le="32.0")
    assert sample(engine, "imagebind_batch_rows_count", kind="video") == 1
    assert (rows_le_24, rows_le_32) == (0, 1)  # one model call of 30 views ...
    assert sample(engine, "imagebind_batch_items_sum", kind="video") == 2  # ... from both requests
    for vector, video in zip(vectors, videos, strict=True):
        np.testing.assert_allclose(vector, tiny_embedder.embed("video", [video])[0], atol=1e-5)


def test_batches_never_exceed_max_batch_size(settings: Settings, tiny_embedder: Embedder) -> None:
    small = settings.replace(max_batch_size=4)
    flat = FixedCosts(4, lambda kind, rows: 1.0, {kind.value: (1, 4) for kind in InputKind})
    texts = [f"text number {i}" for i in range(10)]

    async def work(engine: Engine) -> list[np.ndarray]:
        with gate(tiny_embedder.model, "text") as held:
            first = started(engine, TEXT, texts[0])
            await asyncio.to_thread(held.wait_entered)
            rest = [started(engine, TEXT, text) for text in texts[1:]]
            await until(lambda: engine.scheduler.queued_rows(TEXT) == 9)
            held.release()
            return [(await task)[0] for task in (first, *rest)]

    vectors, engine = run_engine(small, tiny_embedder, work, flat)
    calls = sample(engine, "imagebind_batch_rows_count", kind="text")
    assert calls == 4  # 1 (alone, held), then 4 + 4 + 1
    assert sample(engine, "imagebind_batch_rows_bucket", kind="text", le="4.0") == calls
    assert sample(engine, "imagebind_batch_rows_bucket", kind="text", le="2.0") == 2
    np.testing.assert_allclose(np.stack(vectors), tiny_embedder.embed("text", texts), atol=1e-5)


def test_a_video_over_max_batch_size_is_split_across_calls_and_its_vector_is_exact(
        settings: Settings, tiny_embedder: Embedder) -> None:
    """--max-batch-size 8 and a video of 15 views: two model calls (8 + 7), never more than 8 rows,
    and the views' outputs reassembled into the same vector as one uninterrupted forward."""
    small = settings.replace(max_batch_size=8)
    flat = FixedCosts(8, lambda kind, rows: 1.0, {kind.value: (1, 8) for kind in InputKind})  # batching pays
    video = media.video_bytes(seconds=1.0, fps=4, width=64, height=48, seed=3)

    async def work(engine: Engine) -> np.ndarray:
        return (await asyncio.wait_for(engine.embed(VIDEO, [video]), 60))[0]

    vector, engine = run_engine(small, tiny_embedder, work, flat)
    assert sample(engine, "imagebind_batch_rows_count", kind="video") == 2
    assert sample(engine, "imagebind_batch_rows_sum", kind="video") == VIDEO.facts.rows_per_item == 15
    assert sample(engine, "imagebind_batch_rows_bucket", kind="video", le="8.0") == 2  # 8 + 7
    assert sample(engine, "imagebind_batch_items_sum", kind="video") == 2  # one item in each call
    np.testing.assert_allclose(vector, tiny_embedder.embed("video", [video])[0], atol=1e-5)


def test_a_query_priority_item_goes_before_earlier_default_ones(settings: Settings, tiny_embedder: Embedder,
                                                                images: list[bytes]) -> None:
    order: list[str] = []

    async def work(engine: Engine) -> None:
        with gate(tiny_embedder.model, "vision") as held:
            first = started(engine, IMAGE, images[0], order, "first")
            await asyncio.to_thread(held.wait_entered)
            default = started(engine, IMAGE, images[1], order, "default")
            bulk = started(engine, IMAGE, images[2], order, "bulk", priority=Priority.BULK)
            query = started(engine, IMAGE, images[3], order, "query", priority=Priority.QUERY)
            await until(lambda: engine.scheduler.queued_rows(IMAGE) == 3)
            held.release()
            await asyncio.gather(first, default, bulk, query)

    run_engine(patient(settings), tiny_embedder, work, cpu_like())
    assert order == ["query", "first", "default", "bulk"]  # the query even pauses the first image


def test_a_lone_item_never_waits_for_a_batch_to_fill(settings: Settings, tiny_embedder: Embedder) -> None:
    patient = settings.replace(max_wait_ms=600_000)  # ten minutes: a wait would show
    flat = FixedCosts(32, lambda kind, rows: 1.0, {kind.value: (1, 32) for kind in InputKind})  # batching pays

    async def work(engine: Engine) -> int:
        await asyncio.wait_for(engine.embed(TEXT, ["alone"]), 30)
        return len(await asyncio.wait_for(engine.embed_request({TEXT: ["two", "at once"]}), 30))

    assert run_engine(patient, tiny_embedder, work, flat)[0] == 1


class StuckDecoder:
    """Stands in for the decoder processes: every item decodes until its caller gives up."""

    size = 1

    async def preprocess(self, *args: Any, **options: Any) -> Any:
        await asyncio.Event().wait()

    def close(self) -> None:
        pass


def test_work_abandoned_at_shutdown_whose_callers_also_left_logs_no_error(
        settings: Settings, tiny_embedder: Embedder, images: list[bytes]) -> None:
    """Past the grace period the engine fails what it still holds and, in the same breath, the
    transports cancel their callers: an item's outcome then arrives after nobody waits for it. That
    is the plan, not an error: no "Future exception was never retrieved" per abandoned item (one
    item decoding, two waiting for their turn)."""
    errors: list[str] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context["message"]))
        engine = Engine(settings, embedder=tiny_embedder, decode_pool=StuckDecoder())  # type: ignore[arg-type]
        await engine.start()
        callers = [started(engine, IMAGE, image) for image in images[:3]]
        await until(lambda: engine.scheduler.held_rows(IMAGE) == 3)
        await engine.drain(0)  # the grace is over: everything admitted is abandoned
        for caller in callers:  # and the transports cancel their handlers at once
            caller.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        await engine.close()
        del callers
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    gc.collect()
    assert not [e for e in errors if "never retrieved" in e], errors
