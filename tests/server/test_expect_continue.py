"""`Expect: 100-continue` (curl sends it for bodies over 1 MB): the server says `100 Continue` only
once the checks that need no body have passed — the API key, readiness and draining, admission,
the declared size and the in-flight byte budget. A client that would be refused gets its final
answer instead of the 100 and never uploads the body. On raw sockets, so the first bytes the
server sends are what is checked."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from imagebind_vectorizer.engine.engine import State
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.engine.support import gate
from tests.server.support import (
    HttpResponse,
    InProcessServer,
    LoopThread,
    http_vectorize,
    start_server,
    vectorize_body,
    vision_server_full_after_one_image,
    wait_until,
)

KEY = "expect-test-key-0123456789abcdef"
MAX_REQUEST_BYTES = 100_000
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.fixture(scope="module")
def secured(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder) -> Iterator[InProcessServer]:
    running = start_server(loop_thread, server_settings.replace(api_keys=KEY, max_request_bytes=MAX_REQUEST_BYTES),
                           shared_embedder)
    yield running
    running.stop()


def ask(port: int, length: int, *, key: str | None = KEY, expect: str = "100-continue") -> tuple[socket.socket, bytes]:
    """Send a POST /vectorize's headers with `Expect` and no body; return the socket and the first
    answer the server sends (curl waits up to 1 s for it before sending the body anyway)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    auth = b"Authorization: Bearer %s\r\n" % key.encode() if key else b""
    sock.sendall(b"POST /vectorize HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.5.0\r\n" + auth +
                 b"Content-Length: %d\r\nExpect: %s\r\n\r\n" % (length, expect.encode()))
    return sock, sock.recv(65536)


def final(answer: bytes) -> tuple[int, dict]:
    assert not answer.startswith(b"HTTP/1.1 100"), "100 Continue came before the refusal"
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_continue_comes_after_the_key_and_the_declared_size_are_checked(secured: InProcessServer) -> None:
    body = vectorize_body(["expected"])
    sock, answer = ask(secured.http_port, len(body), key=None)
    sock.close()
    status, payload = final(answer)
    assert status == 401 and "authentication required" in payload["error"]

    sock, answer = ask(secured.http_port, MAX_REQUEST_BYTES + 1)
    sock.close()
    status, payload = final(answer)
    assert status == 413 and str(MAX_REQUEST_BYTES) in payload["error"]

    sock, answer = ask(secured.http_port, len(body), expect="something-else")
    sock.close()
    assert final(answer)[0] == 417

    sock, answer = ask(secured.http_port, len(body))
    try:
        assert answer == CONTINUE
        sock.sendall(body)
        answer = sock.recv(65536)
    finally:
        sock.close()
    status, payload = final(answer)
    assert status == 200 and len(payload["textVectors"]) == 1


def test_continue_is_not_sent_when_no_kind_could_take_the_work(loop_thread: LoopThread, server_settings: Settings,
                                                               make_embedder) -> None:  # type: ignore[no-untyped-def]
    """Images and videos only, an image takes 10 s and a video view 1 s (injected), the budget is
    15 s: with one image computing, nothing else fits, and the answer is 429 instead of 100."""
    embedder = make_embedder(modalities="vision")
    server = vision_server_full_after_one_image(loop_thread, server_settings, embedder)
    answers: list[HttpResponse] = []
    try:
        with gate(embedder.model, "vision") as held:
            first = threading.Thread(target=lambda: answers.append(http_vectorize(
                server.http_port, vectorize_body(images=[media.image_bytes("PNG", 40, 40)]))))
            first.start()
            held.wait_entered()
            sock, answer = ask(server.http_port, 50_000)
            sock.close()
            status, payload = final(answer)
            assert status == 429 and "queue is full" in payload["error"]
            held.release()
            first.join(60)
        assert [a.status for a in answers] == [200]
    finally:
        server.stop()


def test_continue_is_not_sent_while_draining(loop_thread: LoopThread, server_settings: Settings,
                                             shared_embedder: Embedder) -> None:
    server = start_server(loop_thread, server_settings.replace(warmup=False, cache_size=0, shutdown_grace_s=60.0),
                          shared_embedder)
    answers: list[HttpResponse] = []
    with gate(shared_embedder.model, "vision") as held:
        first = threading.Thread(target=lambda: answers.append(http_vectorize(
            server.http_port, vectorize_body(images=[media.image_bytes("PNG", 40, 40)]))))
        first.start()
        held.wait_entered()
        stopping = asyncio.run_coroutine_threadsafe(server.server.stop(), loop_thread.loop)
        wait_until(lambda: server.engine.state is State.DRAINING)
        sock, answer = ask(server.http_port, 50_000)
        sock.close()
        status, payload = final(answer)
        assert status == 503 and "draining" in payload["error"]
        held.release()
        first.join(60)
        stopping.result(60)
    assert [a.status for a in answers] == [200]
