"""Concurrency and overload on a real server: many concurrent requests over both transports get the
vectors one-by-one calls get, and batches of several items form; flooding past the queue gets 429 /
RESOURCE_EXHAUSTED with bounded queues, and service resumes afterwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import torch

from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.model.encoder import EncoderForward
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.server.support import (
    InProcessServer,
    LoopThread,
    embedding_vector,
    grpc_stub,
    http_vectorize,
    item,
    start_server,
    vectorize_body,
    wait_until,
)

ATOL = 1e-5
FIELD = {InputKind.TEXT: "texts", InputKind.IMAGE: "images", InputKind.AUDIO: "audio"}


def one_object(i: int) -> list[tuple[InputKind, bytes | str]]:
    """What one Weaviate object might carry: a text, an image, audio, or a text and an image."""
    text = (InputKind.TEXT, f"object {i}: " + " ".join(["word"] * (i % 9)))
    image = (InputKind.IMAGE, media.image_bytes("PNG", 40 + i % 5 * 8, 40, seed=i))
    audio = (InputKind.AUDIO, media.audio_bytes("wav", seconds=0.5 + (i % 3) * 0.25, freq=200 + 30 * i, seed=i))
    return [[text], [image], [audio], [text, image]][i % 4]  # type: ignore[return-value]


class QueueWatcher:
    """Samples the queue-depth gauge of every kind while a load runs."""

    def __init__(self, server: InProcessServer, kinds: list[InputKind]) -> None:
        self.server, self.kinds = server, kinds
        self.max_depth = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            for kind in self.kinds:
                self.max_depth = max(self.max_depth, self.server.sample("imagebind_queue_depth", {"kind": kind.value}))
            time.sleep(0.002)

    def __enter__(self) -> QueueWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_together(calls: list[Callable[[], object]]) -> list[object]:
    """Run every call on its own thread, released at once; exceptions are returned, not raised."""
    barrier = threading.Barrier(len(calls))

    def wrapped(call: Callable[[], object]) -> object:
        barrier.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(wrapped, calls))


def test_64_concurrent_mixed_requests_match_one_by_one(loop_thread: LoopThread, server_settings: Settings,
                                                       shared_embedder: Embedder, reference: Embedder) -> None:
    settings = server_settings.replace(max_wait_ms=100.0, cache_size=0)
    running = start_server(loop_thread, settings, shared_embedder)
    channel, stub = grpc_stub(running.grpc_target)
    objects = [one_object(i) for i in range(64)]

    def over_http(obj: list[tuple[InputKind, bytes | str]]) -> list[np.ndarray]:
        texts = [c for k, c in obj if k is InputKind.TEXT]
        media_fields = {FIELD[k]: [c for kk, c in obj if kk is k] for k in (InputKind.IMAGE, InputKind.AUDIO)}
        response = http_vectorize(running.http_port, vectorize_body(texts, **media_fields))  # type: ignore[arg-type]
        assert response.status == 200, response.body
        result = response.json()
        return [np.asarray(v, dtype=np.float32) for key in ("textVectors", "imageVectors", "audioVectors")
                for v in result[key]]

    def over_grpc(obj: list[tuple[InputKind, bytes | str]]) -> list[np.ndarray]:
        response = stub.Vectorize(pb.VectorizeRequest(items=[item(k, c) for k, c in obj]), timeout=60)
        return [embedding_vector(e) for e in response.embeddings]

    try:
        calls = [(lambda o=obj, send=(over_http if i % 2 else over_grpc): send(o)) for i, obj in enumerate(objects)]
        results = run_together(calls)
        batches = {kind: (running.sample("imagebind_batch_items_count", {"kind": kind.value}),
                          running.sample("imagebind_batch_items_bucket", {"kind": kind.value, "le": "1.0"}))
                   for kind in FIELD}
    finally:
        channel.close()
        running.stop()
    for obj, got in zip(objects, results, strict=True):
        assert not isinstance(got, Exception), got
        want = [reference.embed(kind, [content])[0] for kind, content in obj]  # one item per call
        assert len(got) == len(want)  # type: ignore[arg-type]
        for g, w in zip(got, want, strict=True):  # type: ignore[call-overload]
            np.testing.assert_allclose(g, w, atol=ATOL)
    # batches of more than one item formed (count of batches above the le=1 bucket)
    assert any(total > single for total, single in batches.values()), batches


# Overload -----------------------------------------------------------------------------------------
class SlowEmbedder(Embedder):
    """The tiny model with a slow forward, standing in for a big model on a busy device."""

    delay_s = 0.5

    def start_rows(self, kind: InputKind, batch: torch.Tensor) -> EncoderForward:
        time.sleep(self.delay_s)
        return super().start_rows(kind, batch)


def test_flood_past_the_queue_gets_429_and_resource_exhausted(loop_thread: LoopThread,
                                                               server_settings: Settings) -> None:
    settings = server_settings.replace(queue_size=4, max_batch_size=2, max_wait_ms=0.0, cache_size=0)
    embedder = SlowEmbedder(settings, progress=False)
    running = InProcessServer(loop_thread, settings, lambda s: Engine(s, embedder=embedder))
    channel, stub = grpc_stub(running.grpc_target)

    def http_call(i: int) -> tuple[str, int, object]:
        response = http_vectorize(running.http_port, vectorize_body([f"flood {i}"]))
        return "http", response.status, (response.json(), response.headers.get("retry-after"))

    def grpc_call(i: int) -> tuple[str, object, object]:
        try:
            stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, f"flood {i}")]), timeout=60)
            return "grpc", grpc.StatusCode.OK, None
        except grpc.RpcError as exc:
            return "grpc", exc.code(), exc.details()

    try:
        with QueueWatcher(running, [InputKind.TEXT]) as watcher:
            results = run_together([(lambda i=i: http_call(i) if i % 2 else grpc_call(i)) for i in range(48)])
        assert not [r for r in results if isinstance(r, Exception)]
        http_results = [r for r in results if r[0] == "http"]  # type: ignore[index]
        grpc_results = [r for r in results if r[0] == "grpc"]  # type: ignore[index]
        # the queue holds 4 and the model takes 0.5 s per batch of 2: most of the 48 are refused; which
        # transport gets the free places is a race
        assert 429 in {status for _, status, _ in http_results} <= {200, 429}
        for _, status, (body, retry_after) in http_results:
            if status == 429:
                assert "queue is full" in body["error"] and retry_after is not None
            else:
                assert len(body["textVectors"]) == 1
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in {code for _, code, _ in grpc_results} \
            <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        successes = sum(r[1] in (200, grpc.StatusCode.OK) for r in results)  # type: ignore[index]
        assert 0 < successes < len(results)
        assert all("queue is full" in details for _, code, details in grpc_results
                   if code is grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert 0 < watcher.max_depth <= settings.queue_size  # bounded: never more admitted than the queue holds
        assert running.sample("imagebind_errors_total", {"kind": "text", "reason": "overloaded"}) > 0
        # once the queue drains, service is normal on both transports
        wait_until(lambda: running.sample("imagebind_queue_depth", {"kind": "text"}) == 0)
        assert http_vectorize(running.http_port, vectorize_body(["after the flood"])).status == 200
        assert len(stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "after")]), timeout=60)
                   .embeddings) == 1
    finally:
        channel.close()
        running.stop()


def test_request_larger_than_the_queue_is_invalid_not_overloaded(loop_thread: LoopThread, server_settings: Settings,
                                                                 shared_embedder: Embedder) -> None:
    """A request that could never fit (more forward passes than the queue holds) is a client error:
    retrying it would never help."""
    running = start_server(loop_thread, server_settings.replace(queue_size=4), shared_embedder)
    channel, stub = grpc_stub(running.grpc_target)
    try:
        response = http_vectorize(running.http_port, vectorize_body([f"t{i}" for i in range(5)]))
        assert response.status == 400 and "split it" in response.json()["error"]
        with pytest.raises(grpc.RpcError) as caught:
            stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, f"t{i}") for i in range(5)]), timeout=30)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert http_vectorize(running.http_port, vectorize_body([f"t{i}" for i in range(4)])).status == 200
    finally:
        channel.close()
        running.stop()



def test_request_bytes_in_flight_are_bounded_as_they_arrive(loop_thread: LoopThread, server_settings: Settings,
                                                            shared_embedder: Embedder) -> None:
    """Bodies are held (read, decoded, preprocessed) before the engine's queue counts their items, so
    the HTTP layer bounds the body bytes it holds: past `max_inflight_bytes` of bytes received and not
    yet answered, a request gets 429; once the held bodies are answered, requests get in again."""
    import socket

    server = start_server(loop_thread, server_settings.replace(max_inflight_bytes=1000), shared_embedder)
    try:
        head = b'{"texts":["'
        tail = b'"]}'
        held_body = head + b"a" * (950 - len(head) - len(tail)) + tail
        slow = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
        try:
            slow.sendall(b"POST /vectorize HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Go-http-client/1.1\r\n"
                         b"Content-Length: %d\r\nAccept-Encoding: gzip\r\n\r\n" % len(held_body) + held_body[:900])
            rejected = None

            def second_is_refused() -> bool:
                nonlocal rejected
                rejected = http_vectorize(server.http_port, vectorize_body(texts=["x" * 150]))
                return rejected.status == 429

            wait_until(second_is_refused, timeout=10)
            assert rejected is not None and "in flight" in rejected.json()["error"]
            assert rejected.headers.get("retry-after")
            slow.sendall(held_body[900:])
            answer = slow.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        finally:
            slow.close()
        wait_until(lambda: http_vectorize(server.http_port, vectorize_body(texts=["x" * 150])).status == 200)
    finally:
        server.stop()


def test_a_batch_waits_only_for_items_already_admitted(loop_thread: LoopThread, server_settings: Settings,
                                                       shared_embedder: Embedder) -> None:
    """`max_wait_ms` is how long a batch may wait for items on their way; once the batch holds every
    admitted item, nothing else is coming and it runs at once. With a ten-minute window, lone and
    concurrent requests still complete (the client gives up after 60 s)."""
    server = start_server(loop_thread, server_settings.replace(max_wait_ms=600_000), shared_embedder)
    try:
        assert http_vectorize(server.http_port, vectorize_body(texts=["alone"])).status == 200
        answers = run_together([lambda i=i: http_vectorize(server.http_port, vectorize_body(texts=[f"t{i}"]))
                                for i in range(6)])
        assert [a.status for a in answers] == [200] * 6  # type: ignore[union-attr]
        assert server.sample("imagebind_batch_items_count", {"kind": "text"}) >= 2
    finally:
        server.stop()
