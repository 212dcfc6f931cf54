"""Scheduling and admission seen through both transports: a caller that leaves (an HTTP client that
resets its connection, a cancelled gRPC stream) frees its place in the queue at once; a full server answers
429 before it reads a body; the priority header and metadata key pass through to the engine.

The model is held inside a trunk block by a gate, so queued work stays queued as long as a test
needs; costs are injected where admission must see a given speed."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import grpc
import pytest

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.engine.support import gate
from tests.server.support import (
    HttpResponse,
    InProcessServer,
    LoopThread,
    grpc_stub,
    http_vectorize,
    item,
    start_server,
    vectorize_body,
    vision_server_full_after_one_image,
    wait_until,
)


@pytest.fixture(scope="module")
def running(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder) -> Iterator[InProcessServer]:
    server = start_server(loop_thread, server_settings.replace(cache_size=0, warmup=False), shared_embedder)
    yield server
    server.stop()


def depth(server: InProcessServer, kind: str = "image") -> float:
    return server.sample("imagebind_queue_depth", {"kind": kind})


def raw_post(port: int, body: bytes, *, send: int | None = None, content_length: int | None = None) -> socket.socket:
    """POST /vectorize on a raw socket, as Go sends it, with `send` bytes of the body (default all)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (b"POST /vectorize HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Go-http-client/1.1\r\n"
            b"Content-Length: %d\r\nAccept-Encoding: gzip\r\n\r\n" % (content_length or len(body)))
    sock.sendall(head + body[:send])
    return sock


def test_an_http_client_whose_connection_is_reset_frees_its_place_at_once(running: InProcessServer,
                                                                 shared_embedder: Embedder) -> None:
    body = vectorize_body(images=[media.image_bytes("PNG", 40, 40, seed=3)])
    computed_before = running.sample("imagebind_batch_items_count", {"kind": "image"})
    answers: list[HttpResponse] = []
    with gate(shared_embedder.model, "vision") as held:
        waiting = threading.Thread(target=lambda: answers.append(http_vectorize(running.http_port, body)))
        waiting.start()
        held.wait_entered()
        leaving = raw_post(running.http_port, body)
        wait_until(lambda: depth(running) == 2)
        # the client resets its connection (an abortive close). A client that closes with a plain
        # FIN cannot be told from one that half-closes and still wants its answer, which the
        # server honours: that item stays until computed (README, The engine).
        leaving.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        leaving.close()
        wait_until(lambda: depth(running) == 1, timeout=10)  # gone from the queue while the model is held
        held.release()
        waiting.join(60)
    assert [a.status for a in answers] == [200]
    assert running.sample("imagebind_batch_items_count", {"kind": "image"}) == computed_before + 1  # never computed


def test_a_cancelled_grpc_stream_frees_its_places_at_once(running: InProcessServer, shared_embedder: Embedder) -> None:
    images = [media.image_bytes("PNG", 40, 32, seed=i) for i in range(4)]
    channel, stub = grpc_stub(running.grpc_target)
    try:
        with gate(shared_embedder.model, "vision") as held:
            requests = [pb.VectorizeStreamRequest(sequence=i, item=item(InputKind.IMAGE, image))
                        for i, image in enumerate(images)]
            call = stub.VectorizeStream(iter(requests), timeout=60)
            held.wait_entered()
            wait_until(lambda: depth(running) == 4)
            call.cancel()
            wait_until(lambda: depth(running) == 0, timeout=10)  # all four, the one in the held forward too
            held.release()
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
        assert caught.value.code() is grpc.StatusCode.CANCELLED
    finally:
        channel.close()


def test_priority_passes_through_both_transports(running: InProcessServer) -> None:
    body = vectorize_body(["a query"])
    for value in ("query", "bulk", "QUERY"):
        assert http_vectorize(running.http_port, body, {"X-ImageBind-Priority": value}).status == 200
    refused = http_vectorize(running.http_port, body, {"x-imagebind-priority": "urgent"})
    assert refused.status == 400 and "x-imagebind-priority" in refused.json()["error"]
    channel, stub = grpc_stub(running.grpc_target)
    try:
        request = pb.VectorizeRequest(items=[item(InputKind.TEXT, "a query")])
        assert len(stub.Vectorize(request, metadata=(("x-imagebind-priority", "query"),), timeout=30).embeddings) == 1
        with pytest.raises(grpc.RpcError) as caught:
            stub.Vectorize(request, metadata=(("x-imagebind-priority", "urgent"),), timeout=30)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "query or bulk" in (caught.value.details() or "")
    finally:
        channel.close()


def test_a_full_server_answers_429_before_reading_a_body(loop_thread: LoopThread, server_settings: Settings,
                                                        make_embedder) -> None:  # type: ignore[no-untyped-def]
    """Images and videos only; an image takes 10 s, a video view 1 s (injected), the budget is 15 s.
    With one image computing nothing else fits: a new request is refused from its headers alone."""
    embedder = make_embedder(modalities="vision")
    server = vision_server_full_after_one_image(loop_thread, server_settings, embedder)
    image = media.image_bytes("PNG", 40, 40)
    channel, stub = grpc_stub(server.grpc_target)
    answers: list[HttpResponse] = []
    try:
        with gate(embedder.model, "vision") as held:
            first = threading.Thread(target=lambda: answers.append(
                http_vectorize(server.http_port, vectorize_body(images=[image]))))
            first.start()
            held.wait_entered()
            # 10 MB announced, 100 bytes sent: the answer comes without the rest of the body
            sock = raw_post(server.http_port, b"x" * 100, content_length=10_000_000)
            try:
                answer = sock.recv(65536)
            finally:
                sock.close()
            assert answer.startswith(b"HTTP/1.1 429"), answer[:300]
            assert b"queue is full" in answer and b"Retry-After" in answer
            with pytest.raises(grpc.RpcError) as caught:
                stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.IMAGE, image)]), timeout=30)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "queue time budget of 15 s" in (caught.value.details() or "")
            held.release()
            first.join(60)
        assert [a.status for a in answers] == [200]
        assert server.sample("imagebind_errors_total", {"kind": "image", "reason": "overloaded"}) >= 1
    finally:
        channel.close()
        server.stop()
