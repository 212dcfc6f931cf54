"""Our server as a subprocess (`python -m imagebind_vectorizer serve`), as an operator runs it:
start it on free ports, time it to ready, read its peak memory, stop it with SIGTERM. With
`Access` it runs with an API key and/or TLS, and every request here goes the same way."""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status_kib(pid: int, key: str) -> int | None:
    """A memory line of /proc/<pid>/status (VmHWM: peak resident set, VmRSS: now), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class Access:
    """How clients reach a secured server: `api_key` (HTTP Basic, as Weaviate sends it from
    BIND_INFERENCE_API; gRPC `authorization: Bearer`) and TLS (the server gets `tls_cert_file` and
    `tls_key_file`, clients verify against `ca_file`). The default is a plain, open server."""

    api_key: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    ca_file: str | None = None

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The flags every harness that starts servers takes; `Access.of(parser, args)` reads them."""
        parser.add_argument("--api-key", default=os.environ.get("IMAGEBIND_BENCH_API_KEY") or None,
                            help="run the servers with this API key and send it (HTTP Basic as Weaviate does, gRPC "
                                 "Bearer), to measure what authentication costs [env IMAGEBIND_BENCH_API_KEY]")
        parser.add_argument("--tls-cert-file", help="run the servers with TLS (with --tls-key-file and --ca-file)")
        parser.add_argument("--tls-key-file", help="the certificate's private key")
        parser.add_argument("--ca-file", help="the CA the clients verify the servers' certificate with")

    @classmethod
    def of(cls, parser: argparse.ArgumentParser, args: argparse.Namespace) -> Access:
        if bool(args.tls_cert_file) != bool(args.tls_key_file):
            parser.error("--tls-cert-file and --tls-key-file go together")
        return cls(args.api_key, args.tls_cert_file, args.tls_key_file, args.ca_file)

    def server_env(self) -> dict[str, str]:
        """For the server's environment (not its command line, which other users can read)."""
        env = {"IMAGEBIND_API_KEYS": self.api_key} if self.api_key else {}
        if self.tls_cert_file and self.tls_key_file:
            env.update(IMAGEBIND_TLS_CERT_FILE=self.tls_cert_file, IMAGEBIND_TLS_KEY_FILE=self.tls_key_file)
        return env

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file)

    def describe(self) -> dict[str, bool]:
        """For a results record: whether a key and TLS were used (never the key)."""
        return {"api_key": bool(self.api_key), "tls": self.tls}

    def http_connection(self, port: int, timeout: float) -> http.client.HTTPConnection:
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                               context=ssl.create_default_context(cafile=self.ca_file))
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def http_headers(self) -> dict[str, str]:
        if not self.api_key:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(f"weaviate:{self.api_key}".encode()).decode()}

    def grpc_channel(self, target: str, options: list[tuple[str, int]]) -> grpc.Channel:
        if self.tls:
            roots = Path(self.ca_file).read_bytes() if self.ca_file else None
            return grpc.secure_channel(target, grpc.ssl_channel_credentials(roots), options=options)
        return grpc.insecure_channel(target, options=options)

    def grpc_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()


def http_get(port: int, path: str, access: Access, timeout: float = 10) -> tuple[int, bytes]:
    conn = access.http_connection(port, timeout)
    try:
        conn.request("GET", path, headers=access.http_headers())
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_status(port: int, path: str, access: Access, timeout: float = 5) -> int | None:
    try:
        return http_get(port, path, access, timeout)[0]
    except OSError:
        return None


@dataclass
class ServerProcess:
    args: list[str]
    log_path: Path
    access: Access = field(default_factory=Access)
    proc: subprocess.Popen[bytes] | None = None
    http_port: int = 0
    grpc_port: int = 0
    started: float = 0.0
    listening_s: float | None = None
    ready_s: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def start(self, timeout: float = 1800) -> ServerProcess:
        """Spawn the server and wait until /.well-known/ready answers 204."""
        self.grpc_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEBIND_")}
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.update(self.access.server_env())
        command = [sys.executable, "-m", "imagebind_vectorizer", "serve", "--host", "127.0.0.1", "--port", "0",
                   "--grpc-port", str(self.grpc_port), "--log-format", "json", *self.args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        give_up = self.started + timeout
        while time.monotonic() < give_up:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log:\n{self.tail()}")
            if not self.http_port:
                self._read_ports()
            elif http_status(self.http_port, "/.well-known/ready", self.access) == 204:
                self.ready_s = time.monotonic() - self.started
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout} s; log:\n{self.tail()}")

    def _read_ports(self) -> None:
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"listening"' in line:
                entry = json.loads(line)
                self.http_port = int(entry["http"].rsplit(":", 1)[1])
                self.listening_s = time.monotonic() - self.started
                return

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def peak_rss_mib(self) -> float | None:
        kib = proc_status_kib(self.pid, "VmHWM")
        return None if kib is None else kib / 1024

    def meta(self) -> dict[str, object]:
        return json.loads(http_get(self.http_port, "/meta", self.access)[1])

    def metrics(self) -> str:
        return http_get(self.http_port, "/metrics", self.access)[1].decode()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 120) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metric_samples(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called `name` in a server's /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    return [(sample.labels, sample.value) for family in text_string_to_metric_families(metrics_text)
            for sample in family.samples if sample.name == name]
