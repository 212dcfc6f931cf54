"""Closed-loop load: `concurrency` clients, each sending one item per request back to back, over
HTTP (byte for byte what Weaviate's Go client sends: no Content-Type, keep-alive connections) or
gRPC (unary Vectorize on one shared channel). The baseline's "one request at a time" is a global
lock in this client, like the reference container's lock around its model: latency includes the
wait for it."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import threading
import time
from dataclasses import asdict, dataclass

import grpc
import numpy as np

from bench.inputs import Payloads
from bench.server import Access
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2_grpc as pb_grpc
from imagebind_vectorizer.server.weaviate_http import RESPONSE_FIELDS


@dataclass
class LevelResult:
    kind: str
    transport: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    items_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    first_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


#: the longest a bench client waits after a 429 before its next request
OVERLOAD_BACKOFF_S = 1.0


class HttpClient:
    """One keep-alive connection per client thread, headers as Go's net/http sends them (with the
    key as Weaviate sends it: Authorization: Basic from the URL's user:password)."""

    def __init__(self, port: int, timeout: float, access: Access | None = None) -> None:
        self.port, self.timeout = port, timeout
        self.access = access or Access()
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in (0, 1):  # like Go, resend once when a reused connection turns out closed
            if self.conn is None:
                self.conn = self.access.http_connection(self.port, self.timeout)
            try:
                self.conn.putrequest("POST", "/vectorize", skip_host=True, skip_accept_encoding=True)
                self.conn.putheader("Host", f"127.0.0.1:{self.port}")
                self.conn.putheader("User-Agent", "Go-http-client/1.1")
                self.conn.putheader("Content-Length", str(len(body)))
                for name, value in self.access.http_headers().items():
                    self.conn.putheader(name, value)
                self.conn.putheader("Accept-Encoding", "gzip")
                for name, value in (headers or {}).items():
                    self.conn.putheader(name, value)
                self.conn.endheaders(body)
                response = self.conn.getresponse()
                answer = response.status, response.read()
                if response.status == 429:  # back off as a client should, instead of a busy loop of refusals
                    time.sleep(min(float(response.getheader("Retry-After") or 1), OVERLOAD_BACKOFF_S))
                return answer
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_level(*, http_port: int, grpc_target: str, transport: str, payloads: Payloads, concurrency: int,
              requests: int | None, duration_s: float | None, serialize: bool, offset: int = 0,
              timeout: float = 3600, access: Access | None = None) -> LevelResult:
    """Send `requests` requests (or as many as fit in `duration_s`, at least one per client)."""
    counter = itertools.count(offset)
    lock = threading.Lock() if serialize else contextlib.nullcontext()
    latencies: list[float] = []
    errors: list[str] = []
    record = threading.Lock()
    access = access or Access()
    channel = access.grpc_channel(grpc_target, [("grpc.max_send_message_length", -1),
                                                ("grpc.max_receive_message_length", -1)]) \
        if transport == "grpc" else None
    metadata = access.grpc_metadata()
    stub = pb_grpc.VectorizerStub(channel) if channel is not None else None
    started = time.monotonic()
    deadline = None if duration_s is None else started + duration_s
    limit = None if requests is None else offset + requests

    def client() -> None:
        http_client = HttpClient(http_port, timeout, access) if transport == "http" else None
        sent = 0
        try:
            while True:
                index = next(counter)
                if limit is not None and index >= limit:
                    return
                if deadline is not None and time.monotonic() >= deadline and sent > 0:
                    return
                sent += 1
                begin = time.monotonic()
                error = None
                with lock:
                    if http_client is not None:
                        status, body = http_client.post(payloads.http_body(index))
                        if status != 200:
                            error = f"HTTP {status}: {body[:200]!r}"
                    else:
                        assert stub is not None
                        try:
                            stub.Vectorize(payloads.grpc_request(index), timeout=timeout, metadata=metadata)
                        except grpc.RpcError as exc:
                            error = f"{exc.code().name}: {exc.details()}"
                took = time.monotonic() - begin
                with record:
                    if error is None:
                        latencies.append(took)
                    else:
                        errors.append(error)
        finally:
            if http_client is not None:
                http_client.close()

    threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    if channel is not None:
        channel.close()
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([float("nan")])
    return LevelResult(
        kind=payloads.kind.value, transport=transport, concurrency=concurrency, requests=len(latencies),
        errors=len(errors), seconds=round(seconds, 3), items_per_s=len(latencies) / seconds,
        p50_ms=float(np.percentile(ms, 50)), p95_ms=float(np.percentile(ms, 95)), p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()), first_error=errors[0] if errors else None)


def fetch_vectors(http_port: int, payloads: Payloads, count: int, access: Access | None = None) -> np.ndarray:
    """Vectors of the first `count` inputs of a kind (for comparing dtypes on the same inputs)."""
    client = HttpClient(http_port, 3600, access)
    key = RESPONSE_FIELDS[payloads.kind]
    try:
        vectors = []
        for index in range(count):
            status, body = client.post(payloads.http_body(index))
            if status != 200:
                raise RuntimeError(f"probe {payloads.kind.value}[{index}]: HTTP {status}: {body[:200]!r}")
            vectors.append(json.loads(body)[key][0])
        return np.asarray(vectors, dtype=np.float64)
    finally:
        client.close()
