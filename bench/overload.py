"""Overload and hostile clients (issue 8's "Done when"): what admitted requests, refused requests,
memory and liveness look like when the server is offered more than it can do, and when it is
attacked while serving. A scenario, not a test: it asserts nothing and prints what it measured.

    python -m bench.overload                                      # huge architecture, random weights
    python -m bench.overload --model-config tiny.json --duration-s 10 --calibrate-s 5   # harness check
    python -m bench.overload --scenarios hostile --hostile slowloris,stalled,tiny-texts

1. **capacity**: a closed loop of `--calibrate-concurrency` clients sending one image per request
   measures the server's throughput X (images/s). Then images arrive open-loop (Poisson) at
   `--overload` x X (default 4x) for `--duration-s`, each on a new connection as Weaviate's Go client
   opens them under load. Reported: the share answered 429, p50/p99 latency of the admitted (200)
   ones and how many took longer than Weaviate's 50 s client timeout, the server's peak RSS, and
   the latency of `GET /.well-known/live` (new connection every 0.25 s, like a kubelet probe) and
   `GET /metrics` during the run.
2. **hostile**: the same honest images at 1x X, while the attacks of issue 8 run alongside: 200
   slowloris connections, 300 idle connections, stalled uploads (declared 256 MB with nothing sent,
   chunked uploads that stop), declared lengths past the limit, 20 MB bodies of two-character
   texts, 8-channel audio, 20,000-letter words, 10-minute videos. Reported: the same figures for
   the honest requests, what each attack got back, and whether the server survived.

Results go to `--out` (default bench/results/) as overload-<time>.json with the hardware."""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.inputs import Payloads
from bench.load import run_level
from bench.run import hardware
from bench.server import ServerProcess, proc_status_kib
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.settings import Settings
from tests import media

#: Weaviate's default client timeout for modules (MODULES_CLIENT_TIMEOUT)
WEAVIATE_TIMEOUT_S = 50.0
HOSTILE = ("slowloris", "idle", "stalled", "declared", "tiny-texts", "audio-8ch", "long-word", "long-video")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-config", default="huge")
    parser.add_argument("--checkpoint", help="real weights instead of random ones")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--scenarios", default="capacity,hostile")
    parser.add_argument("--hostile", default=",".join(HOSTILE), help=f"attacks to run: {', '.join(HOSTILE)}")
    parser.add_argument("--overload", type=float, default=4.0, help="offered load as a multiple of capacity")
    parser.add_argument("--duration-s", type=float, default=120.0)
    parser.add_argument("--calibrate-s", type=float, default=60.0)
    parser.add_argument("--calibrate-concurrency", type=int, default=8)
    parser.add_argument("--server-arg", action="append", default=[], help="extra flag for the server (repeat)")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.hostile_list = [s.strip() for s in args.hostile.split(",") if s.strip()]
    if unknown := set(args.hostile_list) - set(HOSTILE):
        parser.error(f"--hostile: unknown {sorted(unknown)}")
    return args


# Measuring --------------------------------------------------------------------------------------------
def get(port: int, path: str, timeout: float = 10.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class Watch:
    """Probes /live (every 0.25 s) and /metrics (every 1 s) on fresh connections, and samples the
    server's resident memory, until stopped."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.live: list[float] = []
        self.metrics: list[float] = []
        self.failures: Counter[str] = Counter()
        self.rss_kib = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._probe, args=("/.well-known/live", 0.25, self.live)),
                         threading.Thread(target=self._probe, args=("/metrics", 1.0, self.metrics)),
                         threading.Thread(target=self._memory)]

    def __enter__(self) -> Watch:
        with contextlib.suppress(OSError):  # "5": reset the peak RSS (VmHWM) to the current RSS
            Path(f"/proc/{self.server.pid}/clear_refs").write_text("5")
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _probe(self, path: str, every: float, into: list[float]) -> None:
        while True:
            begin = time.monotonic()
            try:
                status = get(self.server.http_port, path, timeout=10)
                if status not in (200, 204):
                    self.failures[f"{path} {status}"] += 1
            except OSError as exc:
                self.failures[f"{path} {type(exc).__name__}"] += 1
            into.append(time.monotonic() - begin)
            if self._stop.wait(every):
                return

    def _memory(self) -> None:
        while not self._stop.wait(0.25):
            self.rss_kib = max(self.rss_kib, proc_status_kib(self.server.pid, "VmRSS") or 0)

    def summary(self) -> dict[str, Any]:
        peak = proc_status_kib(self.server.pid, "VmHWM") if self.server.proc and self.server.proc.poll() is None \
            else None
        return {"live_ms": percentiles(self.live), "metrics_ms": percentiles(self.metrics),
                "probe_failures": dict(self.failures),
                "peak_rss_mib": round(max(peak or 0, self.rss_kib) / 1024, 1)}


def percentiles(seconds: list[float]) -> dict[str, float | int]:
    if not seconds:
        return {"n": 0}
    ms = np.asarray(seconds) * 1000
    return {"n": len(ms), "p50": round(float(np.percentile(ms, 50)), 1), "p99": round(float(np.percentile(ms, 99)), 1),
            "max": round(float(ms.max()), 1)}


def post(port: int, body: bytes, timeout: float = 300.0) -> tuple[int | str, float]:
    """POST /vectorize on a new connection, with the headers Go's client sends; (status, seconds)."""
    begin = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("POST", "/vectorize", skip_accept_encoding=True)
        conn.putheader("User-Agent", "Go-http-client/1.1")
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Accept-Encoding", "gzip")
        conn.endheaders(body)
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - begin
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, time.monotonic() - begin
    finally:
        conn.close()


def open_loop(port: int, payloads: Payloads, rate: float, duration_s: float, seed: int = 0) -> dict[str, Any]:
    """Poisson arrivals at `rate` per second for `duration_s`, each request on its own connection;
    then waits for every answer."""
    rng = random.Random(seed)
    answers: list[tuple[int | str, float]] = []
    with concurrent.futures.ThreadPoolExecutor(512) as pool:
        futures = []
        start = time.monotonic()
        due = start
        index = 0
        while due - start < duration_s:
            time.sleep(max(0.0, due - time.monotonic()))
            futures.append(pool.submit(post, port, payloads.http_body(index)))
            index += 1
            due += rng.expovariate(rate)
        answers = [f.result() for f in futures]
    statuses = Counter(str(status) for status, _ in answers)
    admitted = [seconds for status, seconds in answers if status == 200]
    return {"offered_per_s": round(rate, 3), "sent": len(answers), "statuses": dict(statuses),
            "share_429": round(statuses.get("429", 0) / max(len(answers), 1), 3),
            "admitted_ms": percentiles(admitted),
            "admitted_over_weaviate_timeout": sum(s > WEAVIATE_TIMEOUT_S for s in admitted)}


# Attacks ----------------------------------------------------------------------------------------------
class Attacks:
    """Each attack runs in its own threads until stopped and counts what it got back."""

    def __init__(self, port: int, names: list[str], max_request_bytes: int) -> None:
        self.port, self.names, self.max_request_bytes = port, names, max_request_bytes
        self.outcomes: dict[str, Counter[str]] = {name: Counter() for name in names}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        runners: dict[str, Callable[[], None]] = {
            "slowloris": lambda: self._connections("slowloris", 200, drip=True),
            "idle": lambda: self._connections("idle", 300, drip=False),
            "stalled": self._stalled,
            "declared": lambda: self._loop("declared", self._declared),
            "tiny-texts": lambda: self._loop("tiny-texts", self._body(b'{"texts": [' + b'"ab", ' * 3_000_000
                                                                      + b'"ab"]}')),
            "audio-8ch": lambda: self._loop("audio-8ch", self._body(
                json.dumps({"audio": [base64.b64encode(media.audio_bytes("wav", 0.1, channels=8)).decode()]})
                .encode())),
            "long-word": lambda: self._loop("long-word", self._body(json.dumps({"texts": ["a" * 20_000]}).encode())),
            "long-video": lambda: self._loop("long-video", self._body(json.dumps({"video": [base64.b64encode(
                media.video_bytes(seconds=600, fps=2, width=64, height=48)).decode()]}).encode())),
        }
        for name in self.names:
            thread = threading.Thread(target=runners[name], name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> dict[str, dict[str, int]]:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return {name: dict(counts) for name, counts in self.outcomes.items()}

    def _loop(self, name: str, attempt: Callable[[], int | str]) -> None:
        while not self._stop.is_set():
            self.outcomes[name][str(attempt())] += 1
            self._stop.wait(0.2)  # the attacker shares the machine's cores with the server

    def _body(self, body: bytes) -> Callable[[], int | str]:
        return lambda: post(self.port, body, timeout=120)[0]

    def _declared(self) -> int | str:
        try:
            with self._socket() as sock:
                sock.sendall(b"POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2**30))
                return self._status(sock)
        except OSError as exc:
            return type(exc).__name__

    def _stalled(self) -> None:
        """One upload declaring the largest allowed body and sending nothing, four chunked uploads
        that stop after their first chunk; each reopened when the server answers or closes it."""
        def one(head: bytes, first: bytes) -> None:
            while not self._stop.is_set():
                try:
                    with self._socket() as sock:
                        sock.sendall(head + first)
                        outcome = self._status(sock)
                except OSError as exc:
                    outcome = type(exc).__name__
                self.outcomes["stalled"][str(outcome)] += 1
                self._stop.wait(0.2)

        heads = [(b"POST /vectorize HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % self.max_request_bytes, b"")]
        heads += [(b"POST /vectorize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                   b"10\r\n" + b'{"texts": ["a", ')] * 4
        threads = [threading.Thread(target=one, args=pair, daemon=True) for pair in heads]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _connections(self, name: str, count: int, *, drip: bool) -> None:
        """Keep `count` connections open (reopening those the server closes); dripping ones send one
        header byte per second and never finish."""
        socks: list[socket.socket | None] = [None] * count
        while not self._stop.wait(1.0):
            for i in range(count):
                sock = socks[i]
                try:
                    if sock is None:
                        sock = socks[i] = self._socket()
                        sock.setblocking(False)
                        if drip:
                            sock.send(b"POST /vectorize HTTP/1.1\r\nHost: x\r\n")
                    elif drip:
                        sock.send(b"X")
                    with contextlib.suppress(BlockingIOError):
                        if sock.recv(65536) == b"":
                            raise ConnectionResetError
                except OSError as exc:
                    self.outcomes[name]["closed by server" if isinstance(exc, ConnectionError) else
                                        type(exc).__name__] += 1
                    if sock is not None:
                        sock.close()
                    socks[i] = None
        for sock in socks:
            if sock is not None:
                sock.close()

    def _socket(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=120)

    @staticmethod
    def _status(sock: socket.socket) -> int | str:
        try:
            head = sock.recv(4096)
        except OSError as exc:
            return type(exc).__name__
        if not head:
            return "closed without answer"
        parts = head.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else "garbage"


# Running ----------------------------------------------------------------------------------------------
def server_flags(args: argparse.Namespace) -> list[str]:
    weights = ["--checkpoint", args.checkpoint] if args.checkpoint else ["--random-weights"]
    return ["--model-config", args.model_config, "--device", args.device, "--dtype", args.dtype,
            "--modalities", "vision,text,audio", "--cache-size", "0", *weights, *args.server_arg]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    defaults = Settings()
    record: dict[str, Any] = {"hardware": hardware(args.device), "started": stamp, "args": vars(args),
                              "admission_budget_s": getattr(defaults, "queue_budget_s", None)}
    print("generating images ...", flush=True)
    images = Payloads.generate(InputKind.IMAGE)
    server = ServerProcess(server_flags(args), out / "logs" / f"overload-{stamp}.log")
    print(f"starting the server ({args.model_config}) ...", flush=True)
    with server:
        # warm up (decoder workers start, first forwards allocate) before anything is measured
        run_level(http_port=server.http_port, grpc_target=f"127.0.0.1:{server.grpc_port}", transport="http",
                  payloads=images, concurrency=args.calibrate_concurrency, requests=args.calibrate_concurrency,
                  duration_s=None, serialize=False)
        calibration = run_level(http_port=server.http_port, grpc_target=f"127.0.0.1:{server.grpc_port}",
                                transport="http", payloads=images, concurrency=args.calibrate_concurrency,
                                requests=None, duration_s=args.calibrate_s, serialize=False)
        capacity = calibration.items_per_s
        record["capacity_images_per_s"] = round(capacity, 3)
        print(f"capacity: {capacity:.3f} images/s (closed loop, {args.calibrate_concurrency} clients, "
              f"{calibration.errors} errors)", flush=True)
        if "capacity" in args.scenario_list:
            print(f"capacity: {args.overload:g}x for {args.duration_s:g} s ...", flush=True)
            with Watch(server) as watch:
                load = open_loop(server.http_port, images, args.overload * capacity, args.duration_s)
            record["capacity"] = {**load, **watch.summary()}
            print(json.dumps(record["capacity"], indent=1), flush=True)
        if "hostile" in args.scenario_list:
            print(f"hostile: {', '.join(args.hostile_list)} with honest images at 1x for {args.duration_s:g} s ...",
                  flush=True)
            attacks = Attacks(server.http_port, args.hostile_list, defaults.max_request_bytes)
            with Watch(server) as watch:
                attacks.start()
                load = open_loop(server.http_port, images, capacity, args.duration_s, seed=1)
                outcomes = attacks.stop()
            alive = server.proc is not None and server.proc.poll() is None
            record["hostile"] = {**load, **watch.summary(), "attacks": outcomes, "server_alive": alive,
                                 "exit_code": None if alive else server.proc.returncode}  # type: ignore[union-attr]
            print(json.dumps(record["hostile"], indent=1), flush=True)
    path = out / f"overload-{stamp}.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
