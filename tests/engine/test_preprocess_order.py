"""Whose item is preprocessed next when more items wait than there are workers: one request of many
costly items (texts whose cleaning takes half a second each, long videos) must not hold every
worker while a one-item search waits behind all of them. Preprocessing is held by gates here (a
text tokenizer that waits for the test, a decoder that waits for the test), and the engine's
clock is moved on while the first item is held, so that it measurably took long (as a costly item
does): nothing depends on timing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
import torch

from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.engine.preprocess_queue import PreprocessQueue
from imagebind_vectorizer.engine.scheduler import Priority
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.settings import Settings
from tests import media

BULK = 6


class HeldDecoder:
    """Stands in for the decoder processes: `size` items at a time, like `DecodePool`; each waits
    until the test lets one through, and the order in which items started is recorded. Decodes
    with the real preprocessing."""

    size = 1

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.started: list[bytes] = []
        self.passes = asyncio.Semaphore(0)
        self.slots = asyncio.Semaphore(self.size)

    async def preprocess(self, kind: InputKind, item: bytes | str, options: PreprocessOptions, *,
                         deadline: float | None = None) -> torch.Tensor:
        async with self.slots:
            self.started.append(item if isinstance(item, bytes) else item.encode())
            await self.passes.acquire()
            return self.embedder.preprocess(kind, item)

    def close(self) -> None:
        pass


class HeldTokenizer:
    """Wraps `Embedder.preprocess` for texts: each text waits until the test lets one through."""

    def __init__(self, preprocess: Callable[..., torch.Tensor]) -> None:
        self.inner = preprocess
        self.started: list[str] = []
        self.passes = threading.Semaphore(0)

    def __call__(self, kind: InputKind, item: bytes | str, **options: object) -> torch.Tensor:
        self.started.append(str(item))
        assert self.passes.acquire(timeout=60), "the test never let this item through"
        return self.inner(kind, item, **options)


class Clock:
    """Monotonic time plus whatever the test adds."""

    def __init__(self) -> None:
        self.added = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.added


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture
def settings(tiny_settings: Settings) -> Settings:
    return tiny_settings.replace(workers=1, warmup=False, cache_size=0)


@pytest.mark.parametrize("priority", [Priority.DEFAULT, Priority.QUERY])
def test_a_one_text_search_is_tokenized_before_the_rest_of_a_big_request(
        settings: Settings, tiny_embedder: Embedder, monkeypatch: pytest.MonkeyPatch, priority: Priority) -> None:
    held = HeldTokenizer(tiny_embedder.preprocess)
    monkeypatch.setattr(tiny_embedder, "preprocess", held)
    bulk_texts = [f"imported text {i}" for i in range(BULK)]

    async def main() -> list[str]:
        clock = Clock()
        engine = Engine(settings, embedder=tiny_embedder, clock=clock)
        await engine.start()
        try:
            bulk = asyncio.ensure_future(engine.embed(InputKind.TEXT, bulk_texts))
            await until(lambda: len(held.started) == 1)  # its first text holds the only worker
            search = asyncio.ensure_future(engine.embed(InputKind.TEXT, ["a search"], priority=priority))
            await until(lambda: engine.scheduler.held_rows(InputKind.TEXT) == BULK + 1)
            clock.added += 10  # the first text took ten seconds
            for _ in range(BULK + 1):
                held.passes.release()
            await asyncio.gather(bulk, search)
            return held.started
        finally:
            await engine.close()

    started = asyncio.run(main())
    # arrival order would tokenize all six imported texts first
    assert started == [bulk_texts[0], "a search", *bulk_texts[1:]]


def test_a_one_image_search_is_decoded_before_the_rest_of_a_big_request(
        settings: Settings, tiny_embedder: Embedder) -> None:
    images = [media.image_bytes("PNG", 32, 32, seed=i) for i in range(BULK + 1)]
    decoder = HeldDecoder(tiny_embedder)

    async def main() -> list[bytes]:
        clock = Clock()
        engine = Engine(settings, embedder=tiny_embedder, decode_pool=decoder, clock=clock)  # type: ignore[arg-type]
        await engine.start()
        try:
            bulk = asyncio.ensure_future(engine.embed(InputKind.IMAGE, images[:BULK]))
            await until(lambda: len(decoder.started) == 1)
            search = asyncio.ensure_future(engine.embed(InputKind.IMAGE, images[BULK:]))
            await until(lambda: engine.scheduler.held_rows(InputKind.IMAGE) == BULK + 1)
            clock.added += 10
            for _ in range(BULK + 1):
                decoder.passes.release()
                await asyncio.sleep(0)
            await asyncio.gather(bulk, search)
            return decoder.started
        finally:
            await engine.close()

    started = asyncio.run(main())
    assert started == [images[0], images[BULK], *images[1:BULK]]


def test_requests_take_turns_and_nothing_starves() -> None:
    """An item's place is its request's admission time plus its position times the measured seconds
    per item: one-item requests arriving while a big one is preprocessed alternate with its items,
    and a constant stream of them cannot keep its later items waiting for ever."""

    async def main() -> list[str]:
        now = [0.0]
        queue = PreprocessQueue(1, clock=lambda: now[0])
        order: list[str] = []
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def item(name: str, admitted: float, position: int) -> None:
            async with queue.turn(admitted, position, Priority.DEFAULT, never):
                order.append(name)
                now[0] += 1.0  # every item takes one second (of the injected clock)

        big = [asyncio.ensure_future(item(f"big {i}", 0.0, i)) for i in range(5)]
        small = [asyncio.ensure_future(item(f"new {i}", i + 0.5, 0)) for i in range(5)]  # one every second
        await asyncio.gather(*big, *small)
        return order

    order = asyncio.run(main())
    assert order == ["big 0", "new 0", "big 1", "new 1", "big 2", "new 2", "big 3", "new 3", "big 4", "new 4"]
