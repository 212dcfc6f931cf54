"""SIGTERM under load, on a server process: readiness turns 503, new work is refused, every admitted
request completes with 200, and the process exits 0.

The process is the real `serve` path (`server.app.run`: signal handlers, drain, transports) with one
change: its model calls wait until a gate file appears, so the test decides how long the admitted
work stays queued instead of racing a fast tiny model."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.settings import Settings
from tests.server.support import (
    HttpResponse,
    ServeProcess,
    free_port,
    go_request,
    grpc_stub,
    http_vectorize,
    item,
    launch_server,
    metrics_text,
    sample_value,
    vectorize_body,
    wait_until,
)

GATED_SERVE = """
import asyncio, json, os, sys, time
from imagebind_vectorizer import logs
from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.server.app import run
from imagebind_vectorizer.settings import Settings

gate = os.environ["GATE"]

class GatedEngine(Engine):
    def _start_forward(self, kind, rows):
        while not os.path.exists(gate):
            time.sleep(0.01)
        return super()._start_forward(kind, rows)

settings = Settings(**json.loads(os.environ["SETTINGS"]))
logs.configure(settings.log_level, settings.log_format)
sys.exit(asyncio.run(run(settings, GatedEngine(settings))))
"""


def start_gated_serve(settings: Settings, log_path: Path, gate: Path) -> ServeProcess:
    return launch_server([sys.executable, "-c", GATED_SERVE], log_path,
                         env={"GATE": str(gate), "SETTINGS": json.dumps(dataclasses.asdict(settings))})


def test_sigterm_drains_in_flight_requests_and_exits_0(tiny_settings: Settings, tmp_path: Path) -> None:
    gate = tmp_path / "open-the-gate"
    settings = tiny_settings.replace(host="127.0.0.1", port=0, grpc_port=free_port(), max_batch_size=64,
                                     shutdown_grace_s=30.0, log_format="json")
    process = start_gated_serve(settings, tmp_path / "serve.log", gate)
    try:
        port = process.http_port
        wait_until(lambda: _ready_status(port) == 204, timeout=60)  # 503 while the model loads
        http_results: list[HttpResponse | Exception] = []
        grpc_results: list[object] = []
        channel, stub = grpc_stub(f"127.0.0.1:{process.grpc_port}")

        def send_http(i: int) -> None:
            try:
                http_results.append(http_vectorize(port, vectorize_body([f"in flight {i}"])))
            except Exception as exc:
                http_results.append(exc)

        def send_grpc(i: int) -> None:
            try:
                grpc_results.append(stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, f"rpc {i}")]),
                                                   timeout=60))
            except Exception as exc:
                grpc_results.append(exc)

        threads = [threading.Thread(target=send_http, args=(i,)) for i in range(6)]
        threads += [threading.Thread(target=send_grpc, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        wait_until(lambda: sample_value(metrics_text(port), "imagebind_queue_depth", kind="text") == 10, timeout=30)

        process.terminate()
        # the model is held at the gate, so the server is draining, not gone
        wait_until(lambda: _ready_status(port) == 503, timeout=10)
        late = http_vectorize(port, vectorize_body(["too late"]))
        assert late.status == 503 and "draining" in late.json()["error"]
        with pytest.raises(grpc.RpcError) as late_rpc:
            stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "late")]), timeout=10)
        assert late_rpc.value.code() is grpc.StatusCode.UNAVAILABLE
        assert sample_value(metrics_text(port), "imagebind_ready") == 0
        assert all(thread.is_alive() for thread in threads)  # nothing answered yet: all still queued

        gate.touch()
        for thread in threads:
            thread.join(60)
        assert process.proc.wait(60) == 0, process.log()
        channel.close()
        assert len(http_results) == 6 and all(isinstance(r, HttpResponse) and r.status == 200 for r in http_results), \
            http_results
        assert len(grpc_results) == 4 and all(isinstance(r, pb.VectorizeResponse) for r in grpc_results), grpc_results
        assert '"drained": true' in process.log()
    finally:
        process.kill()


def _ready_status(port: int) -> int:
    return go_request(port, "GET", "/.well-known/ready", timeout=5).status


def test_requests_cut_at_the_end_of_the_grace_get_503_json_and_unavailable(tiny_settings: Settings,
                                                                           tmp_path: Path) -> None:
    """Issue 8: requests still in progress when the grace period ends used to lose their connection,
    and a process with work stuck in the model never exited. Now each gets an answer it can act on:
    503 JSON over HTTP (Weaviate reads the error), also for a request still sending its body;
    UNAVAILABLE over gRPC; and the process exits soon after the grace period."""
    import socket

    gate = tmp_path / "open-the-gate"
    settings = tiny_settings.replace(host="127.0.0.1", port=0, grpc_port=free_port(), max_batch_size=64,
                                     shutdown_grace_s=2.0, log_format="json")
    process = start_gated_serve(settings, tmp_path / "serve.log", gate)
    try:
        port = process.http_port
        wait_until(lambda: _ready_status(port) == 204, timeout=60)
        http_results: list[HttpResponse | Exception] = []
        grpc_results: list[object] = []
        channel, stub = grpc_stub(f"127.0.0.1:{process.grpc_port}")

        def send_http(i: int) -> None:
            try:
                http_results.append(http_vectorize(port, vectorize_body([f"cut {i}"])))
            except Exception as exc:
                http_results.append(exc)

        def send_grpc(i: int) -> None:
            try:
                grpc_results.append(stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, f"rpc {i}")]),
                                                   timeout=60))
            except grpc.RpcError as exc:
                grpc_results.append(exc)

        threads = [threading.Thread(target=send_http, args=(i,)) for i in range(3)]
        threads += [threading.Thread(target=send_grpc, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        uploading = socket.create_connection(("127.0.0.1", port), timeout=60)
        uploading.sendall(b"POST /vectorize HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                          b"Content-Length: 1000\r\n\r\n")
        assert uploading.recv(100).startswith(b"HTTP/1.1 100")
        uploading.sendall(b'{"texts": ["')
        wait_until(lambda: sample_value(metrics_text(port), "imagebind_queue_depth", kind="text") == 5, timeout=30)

        signalled = time.monotonic()
        process.terminate()
        for thread in threads:
            thread.join(30)
        answer = b""
        while chunk := uploading.recv(65536):
            answer += chunk
        uploading.close()
        channel.close()
        cut = [*http_results, answer]
        assert len(http_results) == 3 and all(isinstance(r, HttpResponse) and r.status == 503 and
                                              "grace period is over" in r.json()["error"] for r in http_results), cut
        assert answer.startswith(b"HTTP/1.1 503") and b"grace period is over" in answer, answer
        assert len(grpc_results) == 2 and all(isinstance(r, grpc.RpcError) and r.code() is grpc.StatusCode.UNAVAILABLE
                                              for r in grpc_results), grpc_results
        # The model thread is still held inside its forward (the gate never opens): the engine has
        # abandoned the work, and the process exits without waiting for it, within the grace period
        # plus a few seconds (a generous bound: a loaded test machine).
        assert process.proc.wait(60) == 0, process.log()
        assert time.monotonic() - signalled < settings.shutdown_grace_s + 15, process.log()
        assert '"drained": false' in process.log()
    finally:
        process.kill()
