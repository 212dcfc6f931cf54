"""Helpers for the server tests: real servers on 127.0.0.1 (in-process on one background event loop,
or as a `python -m imagebind_vectorizer serve` subprocess), a client that posts exactly what
Weaviate's Go client posts, gRPC stubs, and Prometheus samples."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.app import Server
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2_grpc as pb_grpc
from imagebind_vectorizer.settings import Settings
from tests.engine.support import FixedCosts

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
RESPONSE_KEYS = ("textVectors", "imageVectors", "audioVectors", "videoVectors", "imuVectors",
                 "thermalVectors", "depthVectors")
MODALITY = {InputKind.TEXT: pb.MODALITY_TEXT, InputKind.IMAGE: pb.MODALITY_IMAGE, InputKind.AUDIO: pb.MODALITY_AUDIO,
            InputKind.VIDEO: pb.MODALITY_VIDEO, InputKind.DEPTH: pb.MODALITY_DEPTH,
            InputKind.THERMAL: pb.MODALITY_THERMAL, InputKind.IMU: pb.MODALITY_IMU}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now. Settings treat grpc_port=0 as "gRPC off", so the
    gRPC port is chosen here; the servers bind without SO_REUSEPORT, so a lost race fails loudly."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# In-process servers -------------------------------------------------------------------------------
class LoopThread:
    """One asyncio loop in a daemon thread; every in-process server of the session runs on it
    (grpc.aio is happiest with a single loop per process)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class InProcessServer:
    """`Server` (both transports over one engine) started on the shared loop, HTTP on any free port
    and gRPC on a free port chosen here."""

    def __init__(self, loop: LoopThread, settings: Settings, engine_factory: Callable[[Settings], Engine] = Engine,
                 *, wait_ready: bool = True) -> None:
        self.loop = loop
        self.settings = settings.replace(port=0, grpc_port=free_port())
        self.server: Server = loop.run(self._create(engine_factory))
        self._loading: concurrent.futures.Future[None] | None = None
        loop.run(self.server.start_transports())
        if wait_ready:
            loop.run(self.server.engine.start())
        else:
            self._loading = asyncio.run_coroutine_threadsafe(self.server.engine.start(), loop.loop)

    async def _create(self, engine_factory: Callable[[Settings], Engine]) -> Server:
        return Server(self.settings, engine_factory(self.settings))

    @property
    def engine(self) -> Engine:
        return self.server.engine

    @property
    def http_port(self) -> int:
        assert self.server.http_port is not None
        return self.server.http_port

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        return self.engine.metrics.registry.get_sample_value(name, dict(labels or {})) or 0.0

    def wait_loaded(self, timeout: float = 60) -> None:
        if self._loading is not None:
            self._loading.result(timeout)

    def stop(self) -> bool:
        return self.loop.run(self.server.stop())


class GatedEngineFactory:
    """Engines whose model load waits for `release()`: a server that stays 'loading'."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    def __call__(self, settings: Settings) -> Engine:
        gate = self.gate

        class GatedEngine(Engine):
            async def start(self) -> None:
                await gate.wait()
                await super().start()

        return GatedEngine(settings)

    def release(self, loop_thread: LoopThread) -> None:
        loop_thread.loop.call_soon_threadsafe(self.gate.set)


def vision_server_full_after_one_image(loop: LoopThread, settings: Settings, embedder: Embedder) -> InProcessServer:
    """Images and videos only; an image costs 10 s and a video view 1 s (injected), the queue budget
    is 15 s: with one image computing, no kind can take another item."""
    per_row = {"image": 10.0, "video": 1.0}
    settings = settings.replace(modalities="vision", warmup=False, cache_size=0, queue_budget_s=15.0)
    return InProcessServer(loop, settings, lambda s: Engine(
        s, embedder=embedder, costs=FixedCosts(32, lambda kind, rows: per_row[kind] * rows,
                                               {kind: (1, 2) for kind in per_row})))


def start_server(loop: LoopThread, settings: Settings, embedder: Embedder | None = None,
                 *, wait_ready: bool = True) -> InProcessServer:
    """A server whose engine uses `embedder` (already loaded) or loads the model itself."""
    return InProcessServer(loop, settings, lambda s: Engine(s, embedder=embedder), wait_ready=wait_ready)


# Subprocess server --------------------------------------------------------------------------------
@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int | None
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_serve(settings: Settings, log_path: Path, *, timeout: float = 120,
                extra_args: Iterable[str] = (), preexec_fn: Callable[[], None] | None = None,
                env: Mapping[str, str] | None = None) -> ServeProcess:
    """`python -m imagebind_vectorizer serve` on free ports (HTTP on port 0, read back from its
    "listening" log line). Returns once it listens; readiness is left to the caller."""
    args = [sys.executable, "-m", "imagebind_vectorizer", "serve", "--host", "127.0.0.1", "--port", "0",
            "--grpc-port", str(free_port()), "--log-format", "json", "--model-config", settings.model_config,
            "--max-batch-size", str(settings.max_batch_size), "--max-wait-ms", str(settings.max_wait_ms),
            "--queue-size", str(settings.queue_size), "--shutdown-grace-s", str(settings.shutdown_grace_s),
            "--dtype", settings.dtype,
            *(["--checkpoint", settings.checkpoint] if settings.checkpoint else ["--random-weights"]),
            *extra_args]
    return launch_server(args, log_path, timeout=timeout, preexec_fn=preexec_fn, env=env)


def launch_server(args: list[str], log_path: Path, *, env: Mapping[str, str] | None = None,
                  timeout: float = 120, preexec_fn: Callable[[], None] | None = None) -> ServeProcess:
    """Run a server command (no IMAGEBIND_* variables leak in) and wait for its JSON "listening" line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEBIND_")}
    # Its temporary files (the decoder pool's forkserver socket) beside its log: a test that kills the
    # server leaves them in its own tmp_path, not in the run's temporary folder.
    full_env.update(PYTHONPATH=str(ROOT), TMPDIR=str(log_path.parent), **(env or {}))
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=log_file, stderr=subprocess.STDOUT,
                                preexec_fn=preexec_fn)
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"listening"' in line:
                entry = json.loads(line)
                http_port = int(entry["http"].rsplit(":", 1)[1])
                grpc_port = int(entry["grpc"].rsplit(":", 1)[1]) if entry.get("grpc") else None
                return ServeProcess(proc, http_port, grpc_port, log_path)
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"server did not start listening:\n{log_path.read_text()}")


# HTTP as Weaviate sends it ------------------------------------------------------------------------
@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def go_request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 60,
               headers: Mapping[str, str] | None = None) -> HttpResponse:
    """A request with exactly the headers Go's net/http client sends for Weaviate: Host,
    User-Agent: Go-http-client/1.1, Content-Length (with a body) and Accept-Encoding: gzip.
    No Content-Type."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{port}")
        conn.putheader("User-Agent", "Go-http-client/1.1")
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Accept-Encoding", "gzip")
        for name, value in (headers or {}).items():  # what Weaviate never sends; other clients may
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return HttpResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def vectorize_body(texts: list[str] | None = None, **media: list[bytes]) -> bytes:
    """The JSON Weaviate marshals: empty lists omitted, media as standard base64, fields as named
    in its Go client (texts, images, audio, video, imu, thermal, depth)."""
    payload: dict[str, list[str]] = {}
    if texts:
        payload["texts"] = texts
    for field, items in media.items():
        if items:
            payload[field] = [base64.b64encode(item).decode() for item in items]
    return json.dumps(payload).encode()


def http_vectorize(port: int, body: bytes, headers: Mapping[str, str] | None = None) -> HttpResponse:
    return go_request(port, "POST", "/vectorize", body, headers=headers)


def metrics_text(port: int) -> str:
    response = go_request(port, "GET", "/metrics")
    assert response.status == 200, response.body
    return response.body.decode()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample_value(text: str, name: str, **labels: str) -> float:
    return metric_samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


# gRPC ---------------------------------------------------------------------------------------------
def grpc_stub(target: str, max_message_bytes: int = 256 * 1024 * 1024) -> tuple[grpc.Channel, pb_grpc.VectorizerStub]:
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", max_message_bytes),
                                                      ("grpc.max_receive_message_length", max_message_bytes)])
    return channel, pb_grpc.VectorizerStub(channel)


def item(kind: InputKind, content: bytes | str, item_id: str = "") -> pb.Item:
    if isinstance(content, str):
        return pb.Item(modality=MODALITY[kind], text=content, id=item_id)
    return pb.Item(modality=MODALITY[kind], data=content, id=item_id)


def embedding_vector(embedding: pb.Embedding) -> np.ndarray:
    if embedding.float32_le:
        return np.frombuffer(embedding.float32_le, dtype="<f4")
    return np.asarray(embedding.values, dtype=np.float32)


def wait_until(condition: Callable[[], bool], timeout: float = 30, interval: float = 0.02) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
