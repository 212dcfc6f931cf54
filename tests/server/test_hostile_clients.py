"""Slow, stalled, half-closed and over-numerous clients, on real sockets against a real server
(issue 8: lock-out, event-loop stalls, no timeouts, half-close). Timeouts are set short here and
every assertion allows many times them: the machine running the tests is shared and loaded."""

from __future__ import annotations

import concurrent.futures
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.connections import CONTINUE
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.settings import Settings
from tests.server.support import (
    InProcessServer,
    LoopThread,
    go_request,
    grpc_stub,
    http_vectorize,
    item,
    start_serve,
    start_server,
    vectorize_body,
    wait_until,
)

HEADER_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
MAX_ITEMS = 100
#: how long any expected close or answer may take on a loaded machine
PATIENCE_S = 30.0
HEAD = b"POST /vectorize HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Go-http-client/1.1\r\n"


@pytest.fixture(scope="module")
def guarded(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder) -> Iterator[InProcessServer]:
    settings = server_settings.replace(header_timeout_s=HEADER_TIMEOUT_S, idle_timeout_s=IDLE_TIMEOUT_S,
                                       body_timeout_s=BODY_TIMEOUT_S, max_request_items=MAX_ITEMS)
    running = start_server(loop_thread, settings, shared_embedder)
    yield running
    running.stop()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S)


def read_to_close(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def assert_serving(port: int) -> None:
    assert go_request(port, "GET", "/.well-known/live", timeout=PATIENCE_S).status == 204
    assert http_vectorize(port, vectorize_body(["still serving"])).status == 200


# Timeouts ------------------------------------------------------------------------------------------
def test_headers_dripped_byte_by_byte_get_408_and_the_connection_closes(guarded: InProcessServer) -> None:
    """Slowloris: each byte arrives in time, the headers never end. The header timeout counts from
    the first byte, so the drip does not keep the connection."""
    with connect(guarded.http_port) as sock:
        sock.sendall(HEAD)
        started = time.monotonic()
        sock.settimeout(0.2)
        answer = b""
        while time.monotonic() - started < PATIENCE_S:
            try:
                sock.sendall(b"X")
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            answer += chunk
        assert time.monotonic() - started < PATIENCE_S, "a dripping client kept its connection"
    status, body = status_and_json(answer)
    assert status == 408 and "headers" in body["error"]
    assert guarded.sample("imagebind_connections_closed_total", {"transport": "http", "reason": "header_timeout"}) >= 1
    assert_serving(guarded.http_port)


def test_a_connection_that_never_sends_is_closed(guarded: InProcessServer) -> None:
    with connect(guarded.http_port) as sock:
        answer, waited = read_to_close(sock)
    assert answer == b"" and waited < PATIENCE_S


def test_an_idle_keep_alive_connection_is_closed_after_its_answer(guarded: InProcessServer) -> None:
    body = vectorize_body(["kept alive"])
    with connect(guarded.http_port) as sock:
        sock.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        answer, waited = read_to_close(sock)
    assert answer.startswith(b"HTTP/1.1 200") and b"textVectors" in answer
    assert IDLE_TIMEOUT_S * 0.5 < waited < PATIENCE_S  # kept alive for a while, then closed


def test_a_client_that_stops_reading_its_answers_is_disconnected(guarded: InProcessServer) -> None:
    """Slow read: requests pipelined on one connection whose answers are never read. Once the
    answers fill the socket buffers nothing moves, and closing the connection would wait for ever
    for them to drain: the connection must be aborted (its descriptor and answer freed) once the
    client has taken nothing for the idle timeout."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a receive window that stays shut
        sock.connect(("127.0.0.1", guarded.http_port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2000)  # ~24 MB of answers
        started = time.monotonic()
        while tcp_state(sock) == TCP_ESTABLISHED and time.monotonic() - started < PATIENCE_S:
            time.sleep(0.1)
        assert tcp_state(sock) != TCP_ESTABLISHED, "a client that reads nothing kept its connection"
    assert guarded.sample("imagebind_connections_closed_total", {"transport": "http", "reason": "write_timeout"}) >= 1
    assert_serving(guarded.http_port)


TCP_ESTABLISHED = 1


def tcp_state(sock: socket.socket) -> int:
    """The kernel's state of a TCP socket (`tcpi_state`, the first byte of TCP_INFO)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


# Half-closed clients ------------------------------------------------------------------------------
def test_a_client_that_half_closes_after_its_request_gets_the_answer(guarded: InProcessServer) -> None:
    """A client may shut down its sending side once the request is out (`shutdown(SHUT_WR)`, curl
    and netcat-style clients); the server must still answer on the open half."""
    body = vectorize_body(["half closed"])
    with connect(guarded.http_port) as sock:
        sock.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        sock.shutdown(socket.SHUT_WR)
        answer, _ = read_to_close(sock)
    # the server may probe whether the client is still there with interim `100 Continue` answers
    # (test_callers_that_leave.py); a half-closed client skips them
    while answer.startswith(CONTINUE):
        answer = answer[len(CONTINUE):]
    status, payload = status_and_json(answer)
    assert status == 200 and len(payload["textVectors"]) == 1


def test_a_body_cut_short_by_a_half_close_gets_400(guarded: InProcessServer) -> None:
    body = vectorize_body(["cut short"])
    with connect(guarded.http_port) as sock:
        sock.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        sock.shutdown(socket.SHUT_WR)
        answer, waited = read_to_close(sock)
    status, payload = status_and_json(answer)
    assert status == 400 and f"after 10 of its {len(body)} bytes" in payload["error"]
    assert waited < BODY_TIMEOUT_S * 5  # the end of the body is seen, not waited for


# The in-flight byte budget ------------------------------------------------------------------------
def test_bodies_that_never_arrive_hold_no_byte_budget(loop_thread: LoopThread, server_settings: Settings,
                                                      shared_embedder: Embedder) -> None:
    """Issue 8's lock-out with the default budget (1 GiB) and request limit (256 MB): one connection
    declares the largest allowed body and sends nothing, four chunked uploads stall. Nothing they
    hold counts, so everyone else is served; each stalled upload gets 408 after the body timeout."""
    settings = server_settings.replace(body_timeout_s=BODY_TIMEOUT_S)
    assert settings.max_inflight_bytes <= 5 * settings.max_request_bytes
    running = start_server(loop_thread, settings, shared_embedder)
    stalled = []
    try:
        # `Expect: 100-continue`: the interim answer shows the request reached its handler
        declared = connect(running.http_port)
        declared.sendall(HEAD + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % settings.max_request_bytes)
        stalled.append(declared)
        for _ in range(4):
            chunked = connect(running.http_port)
            chunked.sendall(HEAD + b"Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
            stalled.append(chunked)
        for sock in stalled:
            assert sock.recv(100).startswith(b"HTTP/1.1 100")
        for sock in stalled[1:]:
            sock.sendall(b"10\r\n" + b'{"texts": ["a", ')
        for index in range(3):
            answer = http_vectorize(running.http_port, vectorize_body([f"served {index}"]))
            assert answer.status == 200, answer.body
        for sock in stalled:
            answer, _ = read_to_close(sock)
            status, payload = status_and_json(answer)
            assert status == 408 and "not received within" in payload["error"]
    finally:
        for sock in stalled:
            sock.close()
        running.stop()


# Per-request work bounded before it starts ---------------------------------------------------------
def test_millions_of_tiny_texts_are_refused_before_any_item_is_touched(guarded: InProcessServer) -> None:
    """A 10 MB body of two-character texts used to be hashed and counted item by item on the event
    loop (liveness unanswered for minutes). Now it is refused from the item limit at once, and
    liveness answers meanwhile."""
    body = b'{"texts": [' + b'"ab", ' * 2_000_000 + b'"ab"]}'
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        flood = pool.submit(http_vectorize, guarded.http_port, body)
        for _ in range(3):
            assert go_request(guarded.http_port, "GET", "/.well-known/live", timeout=5).status == 204
        answer = flood.result(PATIENCE_S)
    assert answer.status == 400 and "max_request_items" in answer.json()["error"], answer.body[:300]
    assert time.monotonic() - started < PATIENCE_S


def test_a_grpc_request_over_the_item_limit_is_refused_before_it_is_parsed(guarded: InProcessServer) -> None:
    """Parsing a message of millions of items alone holds the event loop for seconds: it is counted
    on the wire and refused unparsed (tests/server/test_grpc_wire.py shows the parser is not called)."""
    channel, stub = grpc_stub(guarded.grpc_target)
    try:
        one = pb.VectorizeRequest(items=[item(InputKind.TEXT, "ab")]).SerializeToString()
        raw_vectorize = channel.unary_unary("/imagebind.vectorizer.v1.Vectorizer/Vectorize",
                                            response_deserializer=pb.VectorizeResponse.FromString)
        with pytest.raises(grpc.RpcError) as caught:
            raw_vectorize(one * 1_000_000, timeout=PATIENCE_S)  # concatenated messages merge: 1 M items
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert f"more than {MAX_ITEMS} items" in caught.value.details()
        assert "max_request_items" in caught.value.details()
        ok = stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "ab")] * MAX_ITEMS), timeout=PATIENCE_S)
        assert len(ok.embeddings) == MAX_ITEMS
    finally:
        channel.close()


# Connection limits --------------------------------------------------------------------------------
def test_the_longest_idle_connections_make_room_at_the_limit(loop_thread: LoopThread, server_settings: Settings,
                                                             shared_embedder: Embedder) -> None:
    running = start_server(loop_thread, server_settings.replace(max_connections=8), shared_embedder)
    idle = []
    try:
        for _ in range(20):
            idle.append(connect(running.http_port))
        assert_serving(running.http_port)
        assert running.sample("imagebind_connections", {"transport": "http"}) <= 8
        assert running.sample("imagebind_connections_closed_total", {"transport": "http", "reason": "evicted"}) >= 12
        assert read_to_close(idle[0])[0] == b""  # the oldest went first
    finally:
        for sock in idle:
            sock.close()
        running.stop()


def test_idle_connections_past_the_open_file_limit_do_not_take_the_server_down(tiny_settings: Settings,
                                                                                 tmp_path: Path) -> None:
    """Issue 8: with 256 file descriptors, 300 idle connections stopped the server from accepting
    anything, liveness probes included. The connection limit now fits inside the open-file limit."""
    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    process = start_serve(tiny_settings.replace(shutdown_grace_s=1.0), tmp_path / "serve.log",
                          preexec_fn=low_fd_limit)
    idle: list[socket.socket] = []
    try:
        wait_until(lambda: go_request(process.http_port, "GET", "/.well-known/ready", timeout=5).status == 204,
                   timeout=120)
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", process.http_port), timeout=PATIENCE_S))
        for _ in range(3):
            assert go_request(process.http_port, "GET", "/.well-known/live", timeout=10).status == 204
        assert http_vectorize(process.http_port, vectorize_body(["past the fd limit"])).status == 200
        assert process.proc.poll() is None, process.log()
    finally:
        for sock in idle:
            sock.close()
        process.terminate()
        process.proc.wait(30)


def test_work_the_engine_cannot_admit_is_refused_before_the_body_is_decoded(
        loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder) -> None:
    """Once the JSON says how many items of each kind a body holds, the engine's admission check
    runs before any base64 is decoded: five images for a queue of four are refused for their number,
    even though the fifth is not valid base64 (decoded first, it would have been the error)."""
    running = start_server(loop_thread, server_settings.replace(queue_size=4), shared_embedder)
    try:
        body = json.dumps({"images": ["QUJD"] * 4 + ["not base64!"]}).encode()
        answer = http_vectorize(running.http_port, body)
        assert answer.status == 400 and "forward passes" in answer.json()["error"], answer.body
        assert "base64" not in answer.json()["error"]
    finally:
        running.stop()
