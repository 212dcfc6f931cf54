"""Our server as a subprocess (`python -m imagebind_vectorizer serve`), as an operator runs it:
start it on free ports, time it to ready, read its peak memory, stop it with SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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


def http_status(port: int, path: str, timeout: float = 5) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


@dataclass
class ServerProcess:
    args: list[str]
    log_path: Path
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
            elif http_status(self.http_port, "/.well-known/ready") == 204:
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
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            conn.request("GET", "/meta")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def metrics(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().read().decode()
        finally:
            conn.close()

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
