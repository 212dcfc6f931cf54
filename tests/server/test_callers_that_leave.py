"""Callers that leave while their work is queued. Over HTTP, a client that closes its connection
with a plain FIN (what Weaviate's Go client does when its timeout fires) must not keep its items in
the queue, while a client that only half-closed its side still gets its answer. TCP cannot tell the
two apart until the server writes; the server writes interim `100 Continue` answers and a closed
socket answers them with a reset (server/connections.py). Over gRPC, a client stream that stops
sending is ended after `stream_idle_timeout_s` (server/grpc_service.py).

The model is held inside a trunk block by a gate, so queued work stays queued as long as a test
needs."""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import grpc
import pytest

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.connections import MAX_INTERIM_ANSWERS, PROBE_DELAYS_S
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.engine.support import gate
from tests.goclient import go_client
from tests.server.support import (
    HttpResponse,
    InProcessServer,
    LoopThread,
    grpc_stub,
    http_vectorize,
    item,
    start_server,
    vectorize_body,
    wait_until,
)

T = TypeVar("T")
#: how long a drop may take on a loaded machine (the server needs PROBE_DELAYS_S[1], 0.25 s, on loopback)
PATIENCE_S = 10.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.fixture(scope="module")
def running(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder) -> Iterator[InProcessServer]:
    server = start_server(loop_thread, server_settings.replace(cache_size=0, warmup=False), shared_embedder)
    yield server
    server.stop()


def depth(server: InProcessServer) -> float:
    return server.sample("imagebind_queue_depth", {"kind": "image"})


def computed(server: InProcessServer) -> float:
    return server.sample("imagebind_batch_items_count", {"kind": "image"})


def image_body(seed: int) -> bytes:
    return vectorize_body(images=[media.image_bytes("PNG", 40, 40, seed=seed)])


def send_request(port: int, body: bytes) -> socket.socket:
    """POST /vectorize on a raw socket with the headers Go's client sends, body complete."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(b"POST /vectorize HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Go-http-client/1.1\r\n"
                 b"Content-Length: %d\r\nAccept-Encoding: gzip\r\n\r\n" % len(body) + body)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@contextmanager
def one_image_held(server: InProcessServer, embedder: Embedder) -> Iterator[list[HttpResponse]]:
    """The vision encoder gated with one image request inside the held forward (queue depth 1);
    yields the list that request's answer lands in once the gate opens (when the block ends)."""
    answers: list[HttpResponse] = []
    with gate(embedder.model, "vision") as held:
        waiting = threading.Thread(target=lambda: answers.append(http_vectorize(server.http_port, image_body(1))))
        waiting.start()
        try:
            held.wait_entered()
            yield answers
        finally:
            held.release()
            waiting.join(60)


def test_a_client_that_closes_its_connection_leaves_the_queue(running: InProcessServer,
                                                             shared_embedder: Embedder) -> None:
    """A plain close (FIN, no reset) while the item waits: the item leaves the queue within the
    probe schedule and is never computed."""
    before = computed(running)
    with one_image_held(running, shared_embedder) as answers:
        leaving = send_request(running.http_port, image_body(2))
        wait_until(lambda: depth(running) == 2)
        leaving.close()  # an orderly close: FIN
        wait_until(lambda: depth(running) == 1, timeout=PATIENCE_S)  # gone while the model is held
        assert running.sample("imagebind_connections_closed_total",
                              {"transport": "http", "reason": "client_gone"}) >= 1
    assert [a.status for a in answers] == [200]
    assert computed(running) == before + 1  # the one in front only


def test_a_client_that_half_closes_reads_interim_answers_then_its_own(running: InProcessServer,
                                                                     shared_embedder: Embedder) -> None:
    """`shutdown(SHUT_WR)` after the request: the item stays queued through every probe, the
    client sees at most MAX_INTERIM_ANSWERS `100 Continue` answers and then its 200."""
    with one_image_held(running, shared_embedder) as answers:
        sock = send_request(running.http_port, image_body(3))
        wait_until(lambda: depth(running) == 2)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while received.count(CONTINUE) < MAX_INTERIM_ANSWERS:  # the whole probe schedule
            chunk = sock.recv(65536)
            assert chunk, "the server closed the half-closed connection"
            received += chunk
        assert received == CONTINUE * MAX_INTERIM_ANSWERS
        assert depth(running) == 2  # nothing was dropped
    answer = read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"imageVectors" in answer and answers[0].status == 200


def test_python_http_client_that_half_closes_gets_its_answer(running: InProcessServer,
                                                           shared_embedder: Embedder) -> None:
    """http.client skips the interim answers (HTTPResponse.begin) and returns the 200."""
    with one_image_held(running, shared_embedder) as answers:
        conn = http.client.HTTPConnection("127.0.0.1", running.http_port, timeout=60)
        conn.request("POST", "/vectorize", body=image_body(4))
        wait_until(lambda: depth(running) == 2)
        assert conn.sock is not None
        conn.sock.shutdown(socket.SHUT_WR)
        time.sleep(PROBE_DELAYS_S[1] + 0.5)  # past the probe that finds a closed peer
        assert depth(running) == 2
    response = conn.getresponse()
    assert response.status == 200 and b"imageVectors" in response.read()
    conn.close()
    assert answers[0].status == 200


def test_a_go_client_that_times_out_leaves_nothing_queued(running: InProcessServer, shared_embedder: Embedder,
                                                         tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Go's net/http client with a 1 s timeout (Weaviate's MODULES_CLIENT_TIMEOUT, shortened): it
    closes the connection when the timeout fires, and its item leaves the queue."""
    client = go_client()
    before = computed(running)
    body = tmp_path / "body.json"
    body.write_bytes(image_body(5))
    with one_image_held(running, shared_embedder) as answers:
        result = subprocess.run([str(client), "-url", f"http://127.0.0.1:{running.http_port}/vectorize",
                                 "-body", str(body), "-timeout", "1s"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "Client.Timeout exceeded" in result.stdout, result.stdout + result.stderr
        wait_until(lambda: depth(running) == 1, timeout=PATIENCE_S)
    assert [a.status for a in answers] == [200]
    assert computed(running) == before + 1



@pytest.mark.weaviate
def test_weaviate_that_gives_up_leaves_nothing_queued(running: InProcessServer, shared_embedder: Embedder,
                                                     tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A real Weaviate (v1.39, built from its Go module) with MODULES_CLIENT_TIMEOUT=2s inserts an
    image while the model is held: its module client gives up, and the item leaves the queue."""
    import base64

    from imagebind_vectorizer.weaviate.collections import create_collection, make_spec
    from imagebind_vectorizer.weaviate.local import LocalWeaviate

    before = computed(running)
    with LocalWeaviate(f"http://127.0.0.1:{running.http_port}", data_dir=tmp_path / "data",
                       log_path=tmp_path / "weaviate.log", modules_client_timeout_s=2) as weaviate:
        client = weaviate.connect(timeout_s=60)
        try:
            collection = create_collection(client, make_spec("CallersThatLeave"))
            with one_image_held(running, shared_embedder) as answers:
                started = time.monotonic()
                with pytest.raises(Exception, match=r"(?i)deadline|timeout") as caught:
                    collection.data.insert({"image": base64.b64encode(media.image_bytes("PNG", 40, 40, seed=6))
                                            .decode()})
                assert time.monotonic() - started < PATIENCE_S, caught.value
                wait_until(lambda: depth(running) == 1, timeout=PATIENCE_S)
        finally:
            client.close()
    assert [a.status for a in answers] == [200]
    assert computed(running) == before + 1


# gRPC client streams that go quiet ---------------------------------------------------------------
STREAM_IDLE_S = 0.5


@pytest.fixture(scope="module")
def quiet(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder) -> Iterator[InProcessServer]:
    settings = server_settings.replace(cache_size=0, warmup=False, stream_idle_timeout_s=STREAM_IDLE_S,
                                       max_segment_streams=1)
    server = start_server(loop_thread, settings, shared_embedder)
    yield server
    server.stop()


def stalling(first: Iterable[T], resume: threading.Event) -> Iterator[T]:
    """`first`, then nothing until `resume` is set (the client goes quiet without ending the stream)."""
    yield from first
    resume.wait(60)


def ended(server: InProcessServer, method: str) -> float:
    endpoint = f"/imagebind.vectorizer.v1.Vectorizer/{method}"
    return server.sample("imagebind_requests_total",
                         {"transport": "grpc", "endpoint": endpoint, "status": "DEADLINE_EXCEEDED"})


def test_a_stream_that_stops_sending_is_ended(quiet: InProcessServer) -> None:
    """Two texts, then silence without ending the stream: both answers arrive, then the call ends
    with DEADLINE_EXCEEDED naming the setting, although the client set no deadline."""
    resume = threading.Event()
    channel, stub = grpc_stub(quiet.grpc_target)
    before = ended(quiet, "VectorizeStream")
    started = time.monotonic()
    try:
        requests = [pb.VectorizeStreamRequest(sequence=i, item=item(InputKind.TEXT, f"text {i}")) for i in range(2)]
        call = stub.VectorizeStream(stalling(requests, resume))
        answers = []
        with pytest.raises(grpc.RpcError) as caught:
            for answer in call:
                answers.append(answer)
        assert [a.sequence for a in answers] == [0, 1] and all(a.HasField("embedding") for a in answers)
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stream_idle_timeout_s" in (caught.value.details() or "")
        assert STREAM_IDLE_S <= time.monotonic() - started < PATIENCE_S
        wait_until(lambda: ended(quiet, "VectorizeStream") == before + 1)  # counted once the handler is done
    finally:
        resume.set()
        channel.close()


def test_a_stream_waiting_for_its_own_answers_is_not_idle(quiet: InProcessServer, shared_embedder: Embedder) -> None:
    """The clock stops while the server owes the stream an answer: an image held in the model for
    three idle timeouts is answered, and the stream ends normally."""
    resume = threading.Event()
    channel, stub = grpc_stub(quiet.grpc_target)
    try:
        with gate(shared_embedder.model, "vision") as held:
            image = item(InputKind.IMAGE, media.image_bytes("PNG", 40, 40))
            request = pb.VectorizeStreamRequest(sequence=7, item=image)
            call = stub.VectorizeStream(stalling([request], resume), timeout=60)
            held.wait_entered()
            time.sleep(3 * STREAM_IDLE_S)
            resume.set()  # the client ends its stream while its image is still held
            held.release()
        answers = list(call)
        assert [a.sequence for a in answers] == [7] and answers[0].HasField("embedding")
        assert call.code() is grpc.StatusCode.OK
    finally:
        resume.set()
        channel.close()


def test_a_segments_upload_that_stops_sending_gives_its_slot_back(quiet: InProcessServer) -> None:
    """One segment stream at a time (max_segment_streams=1): an upload that stalls after its first
    chunk is ended, and the next upload is admitted."""
    resume = threading.Event()
    channel, stub = grpc_stub(quiet.grpc_target)
    audio = media.wav_bytes(media.window_tone(3.0, 16000, 2.0), 16000)
    options = pb.SegmentOptions(modality=pb.MODALITY_AUDIO, total_bytes=len(audio))
    first = pb.VectorizeSegmentsRequest(options=options, chunk=audio[:1000])
    try:
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.VectorizeSegments(stalling([first], resume)))
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stream_idle_timeout_s" in (caught.value.details() or "")
        assert quiet.server.segmenter.active == 0
        whole = [pb.VectorizeSegmentsRequest(options=options, chunk=audio)]
        assert list(stub.VectorizeSegments(iter(whole), timeout=60))[-1].HasField("done")
    finally:
        resume.set()
        channel.close()


# The clients' side: interim answers before the final one -------------------------------------------
@contextmanager
def interim_then_final_server() -> Iterator[str]:
    """A bare HTTP/1.1 server that answers each request with MAX_INTERIM_ANSWERS `100 Continue`
    (the most this server sends one request) and then `200 {"ok": true}`; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(CONTINUE * MAX_INTERIM_ANSWERS + b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 12\r\nConnection: close\r\n\r\n" + b'{"ok": true}')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/vectorize"
    finally:
        stop.set()
        thread.join(10)
        listener.close()


def test_clients_skip_the_interim_answers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What a half-closed client receives in the worst case, read by the clients that call this
    server: Go's net/http (Weaviate), Python's http.client, aiohttp's client and curl."""
    import asyncio
    import shutil

    import aiohttp

    body = tmp_path / "body.json"
    body.write_bytes(b'{"texts": ["a"]}')
    with interim_then_final_server() as url:
        go = subprocess.run([str(go_client()), "-url", url, "-body", str(body)], capture_output=True, text=True,
                            timeout=60)
        assert go.stdout.strip() == '200 {"ok": true}', go.stdout + go.stderr

        host, port = url.split("/")[2].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/vectorize", body=body.read_bytes())
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b'{"ok": true}')
        conn.close()

        async def with_aiohttp() -> tuple[int, bytes]:
            async with aiohttp.ClientSession() as session, session.post(url, data=body.read_bytes()) as answer:
                return answer.status, await answer.read()

        assert asyncio.run(with_aiohttp()) == (200, b'{"ok": true}')

        if shutil.which("curl"):
            curl = subprocess.run(["curl", "-sS", "-w", " %{http_code}", "--data-binary", f"@{body}", url],
                                  capture_output=True, text=True, timeout=60)
            assert curl.stdout == '{"ok": true} 200', curl.stdout + curl.stderr
