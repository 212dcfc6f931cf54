"""Run a local Weaviate (and our vectorizer server) as child processes on 127.0.0.1.

Used by the demo and by the end-to-end tests. The Weaviate binary comes from `WEAVIATE_BIN`, or
from a cache directory keyed by version, or is built once with `go install` into that directory.

Weaviate is started the way its multi2vec-bind contract needs it:
our server first (Weaviate waits at most 120 s for its readiness and then exits), every cluster
address on 127.0.0.1 (memberlist otherwise looks for a private interface address), free ports for
REST, gRPC, gossip, data and both raft ports, only the multi2vec-bind module, no telemetry and no
profiling listener. Weaviate's gRPC port listens on all interfaces; Weaviate offers no setting to
restrict it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from imagebind_vectorizer.settings import cache_home
from imagebind_vectorizer.weaviate.errors import LocalServerError

if TYPE_CHECKING:
    import weaviate

WEAVIATE_VERSION = "v1.39.0"
WEAVIATE_MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"
LOOPBACK = "127.0.0.1"


# Binary ------------------------------------------------------------------------------------------
def build_cache_root() -> Path:
    """Where built tools are kept: $IMAGEBIND_BUILD_CACHE, else ~/.cache/imagebind-vectorizer-build
    (the Makefile's CACHE_ROOT), always outside the checkout."""
    env = os.environ.get("IMAGEBIND_BUILD_CACHE")
    if env:
        return Path(env).expanduser()
    return cache_home() / "imagebind-vectorizer-build"


def cached_binary_path(version: str = WEAVIATE_VERSION) -> Path:
    return build_cache_root() / f"weaviate-{version}" / "weaviate-server"


def find_weaviate_binary(*, build: bool = True, version: str = WEAVIATE_VERSION,
                         log: IO[str] | None = None) -> Path:
    """The weaviate-server binary: $WEAVIATE_BIN if set, else the cached build of `version`, else
    (when `build`) a fresh `go install` into the cache."""
    env = os.environ.get("WEAVIATE_BIN")
    if env:
        path = Path(env).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        if not build:
            raise LocalServerError(f"WEAVIATE_BIN={env} is not an executable file")
        return build_weaviate(path, version=version, log=log)
    path = cached_binary_path(version)
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if not build:
        raise LocalServerError(
            f"no Weaviate binary: set WEAVIATE_BIN, run `make weaviate`, or allow building {version} into {path}")
    return build_weaviate(path, version=version, log=log)


#: What a first build costs, measured for v1.39.0 (`go list -deps -tags netgo` of the command: 1866
#: packages, standard library included) and timed on a 2-core VM; said before the build starts.
WEAVIATE_BUILD_PACKAGES = 1866
WEAVIATE_BUILD_ESTIMATE = ("about 25 minutes on 2 cores; it downloads about 0.5 GB of Go modules and fills "
                           "about 4 GB of Go caches (`go env GOMODCACHE GOCACHE`), reused by later builds")


def build_weaviate(dest: Path, *, version: str = WEAVIATE_VERSION, log: IO[str] | None = None,
                   progress: bool | None = None) -> Path:
    """`CGO_ENABLED=0 go install -v -tags netgo .../weaviate-server@version` into dest's directory
    (Go >= 1.26), once: concurrent builds wait on a lock and reuse the first one's binary. Says what
    it is about to do and how long that takes, then shows go's own progress: the modules it
    downloads and a count of the packages compiled (a bar on a terminal)."""
    go = shutil.which("go")
    if go is None:
        raise LocalServerError("building Weaviate needs Go >= 1.26 on PATH (https://go.dev/dl), "
                               "or point WEAVIATE_BIN at a weaviate-server binary")
    out = log or sys.stderr
    show = out.isatty() if progress is None else progress
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock_path = dest.parent / ".build.lock"
    with open(lock_path, "w") as lock:
        if not _lock(lock, wait=False):
            print(f"waiting for another build of weaviate-server into {dest.parent} to finish ...", file=out,
                  flush=True)
            _lock(lock)
        if dest.is_file():  # another process finished the build while we waited
            return dest
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".gobin-") as gobin:
            print(f"== set-up: building weaviate-server {version} from its Go module into {dest.parent} (first "
                  f"run only): {WEAVIATE_BUILD_ESTIMATE}", file=out, flush=True)
            goflags = " ".join(filter(None, [os.environ.get("GOFLAGS", ""), "-trimpath"]))
            env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": gobin, "GOFLAGS": goflags}
            started = time.monotonic()
            code = _go_install([go, "install", "-v", "-tags", "netgo", f"{WEAVIATE_MODULE}@{version}"], env,
                               out, show)
            built = Path(gobin) / "weaviate-server"
            if code != 0 or not built.is_file():
                raise LocalServerError(f"`go install {WEAVIATE_MODULE}@{version}` failed (exit {code}); "
                                       "see the output above")
            os.replace(built, dest)
            print(f"== weaviate-server {version} built in {(time.monotonic() - started) / 60:.0f} min: {dest}",
                  file=out, flush=True)
    return dest


def _go_install(argv: list[str], env: Mapping[str, str], out: IO[str], show: bool) -> int:
    """Run `go install -v`, passing go's messages through and counting the package paths it prints
    (one per compiled package): a bar on a terminal, else a line every 100 packages."""
    from tqdm import tqdm

    process = subprocess.Popen(argv, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace")
    assert process.stdout is not None
    started = time.monotonic()
    compiled = 0
    with tqdm(total=WEAVIATE_BUILD_PACKAGES, desc="weaviate-server: packages compiled", unit="pkg", file=out,
              disable=not show, dynamic_ncols=True) as bar:
        for line in process.stdout:
            text = line.rstrip("\n")
            if text and " " not in text and not text.startswith("go:"):  # a package path: one compiled
                compiled += 1
                bar.update(1)
                if not show and compiled % 100 == 0:
                    print(f"weaviate-server: {compiled} of about {WEAVIATE_BUILD_PACKAGES} packages compiled "
                          f"({(time.monotonic() - started) / 60:.0f} min)", file=out, flush=True)
            elif text:  # go: downloading ..., and any error, as go wrote it
                if show:
                    bar.write(text, file=out)
                else:
                    print(text, file=out, flush=True)
    return process.wait()


def _lock(handle: IO[str], *, wait: bool = True) -> bool:
    """An exclusive flock on `handle` (the Makefile's `flock` takes the same kind of lock); with
    `wait=False`, False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


# Ports and processes -----------------------------------------------------------------------------
def free_port(host: str = LOOPBACK, *, udp_too: bool = False, avoid: Sequence[int] = ()) -> int:
    """A port that is free now (TCP, and UDP when asked: memberlist gossips on both)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            if port in avoid:
                continue
            if udp_too:
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                        udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise LocalServerError("could not find a free port on " + host)


def _is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        try:
            tcp.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    """Child-side: get SIGTERM if the parent dies, so a killed demo leaves no server behind."""
    os.setsid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _http_status(url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> int | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError, TimeoutError):
        return None


def tail(path: Path | None, lines: int = 60) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _ChildProcess:
    """A server child process with a log file, readiness polling and an orderly stop."""

    name = "process"

    def __init__(self, log_path: Path | None) -> None:
        self._own_log_dir: tempfile.TemporaryDirectory[str] | None = None
        if log_path is None:
            self._own_log_dir = tempfile.TemporaryDirectory(prefix=f"ibv-{self.name}-log-")
            log_path = Path(self._own_log_dir.name) / f"{self.name}.log"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if cwd is not None:
                cwd.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        except OSError as exc:
            raise LocalServerError(f"cannot start {self.name} ({argv[0]}): {exc}") from None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _wait_ready(self, url: str, timeout: float, ok: tuple[int, ...],
                    context: ssl.SSLContext | None = None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise LocalServerError(f"{self.name} exited (code {code}) before it was ready; its log "
                                       f"({self.log_path}) ends with:\n{tail(self.log_path)}")
            if _http_status(url, context=context) in ok:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise LocalServerError(f"{self.name} was not ready at {url} within {timeout:.0f} s; its log "
                                       f"({self.log_path}) ends with:\n{tail(self.log_path)}")
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds. Returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        return process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def cleanup(self) -> None:
        """Stop, and remove the temporary folders this object made (a log folder it was not given)."""
        self.stop()
        if self._own_log_dir is not None:
            self._own_log_dir.cleanup()
            self._own_log_dir = None

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)


@dataclass(frozen=True)
class WeaviatePorts:
    http: int
    grpc: int
    gossip: int
    data: int
    raft: int
    raft_rpc: int

    @classmethod
    def pick(cls, host: str = LOOPBACK) -> WeaviatePorts:
        taken: list[int] = []

        def one(udp: bool = False) -> int:
            port = free_port(host, udp_too=udp, avoid=taken)
            taken.append(port)
            return port

        def pair(udp: bool = False) -> tuple[int, int]:
            # With CLUSTER_IN_LOCALHOST Weaviate reaches a node's raft RPC at its raft port + 1
            # (cluster/resolver/rpc.go), whatever RAFT_INTERNAL_RPC_PORT says; gossip and data
            # ports get the same layout for symmetry with Weaviate's defaults (7946/7947).
            for _ in range(200):
                first = free_port(host, udp_too=udp, avoid=taken)
                if first + 1 in taken or first + 1 > 65535 or not _is_free(host, first + 1):
                    continue
                taken.extend((first, first + 1))
                return first, first + 1
            raise LocalServerError("could not find two adjacent free ports on " + host)

        http, grpc = one(), one()
        gossip, data = pair(udp=True)
        raft, raft_rpc = pair()
        return cls(http=http, grpc=grpc, gossip=gossip, data=data, raft=raft, raft_rpc=raft_rpc)


class LocalWeaviate(_ChildProcess):
    """A single-node Weaviate on loopback with only the multi2vec-bind module, vectorizing through
    `inference_url` (our server, which must already be ready)."""

    name = "weaviate"

    def __init__(self, inference_url: str, *, binary: Path | None = None, data_dir: Path | None = None,
                 ports: WeaviatePorts | None = None, host: str = LOOPBACK, modules_client_timeout_s: int = 600,
                 log_path: Path | None = None, extra_env: Mapping[str, str] | None = None) -> None:
        super().__init__(log_path)
        self.inference_url = inference_url.rstrip("/")  # Weaviate appends "/vectorize" verbatim
        self.binary = binary
        self._own_data: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._own_data = tempfile.TemporaryDirectory(prefix="ibv-weaviate-data-")
            data_dir = Path(self._own_data.name)
        self.data_dir = data_dir
        self.host = host
        self.ports = ports or WeaviatePorts.pick(host)
        self.modules_client_timeout_s = modules_client_timeout_s
        self.extra_env = dict(extra_env or {})

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.ports.http}"

    @property
    def grpc_port(self) -> int:
        return self.ports.grpc

    def environment(self) -> dict[str, str]:
        p = self.ports
        env = {key: value for key, value in os.environ.items()
               if key in ("PATH", "HOME", "TMPDIR", "TZ", "LANG", "LC_ALL")}
        env.update({
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
            "PERSISTENCE_DATA_PATH": str(self.data_dir),
            "ENABLE_MODULES": "multi2vec-bind",
            "API_BASED_MODULES_DISABLED": "true",
            "BIND_INFERENCE_API": self.inference_url,
            "DEFAULT_VECTORIZER_MODULE": "none",
            "MODULES_CLIENT_TIMEOUT": f"{self.modules_client_timeout_s}s",
            "CLUSTER_HOSTNAME": "node1",
            "CLUSTER_IN_LOCALHOST": "true",
            "CLUSTER_BIND_ADDR": self.host,
            "CLUSTER_ADVERTISE_ADDR": self.host,
            "CLUSTER_GOSSIP_BIND_PORT": str(p.gossip),
            "CLUSTER_DATA_BIND_PORT": str(p.data),
            "RAFT_BOOTSTRAP_EXPECT": "1",
            "RAFT_PORT": str(p.raft),
            "RAFT_INTERNAL_RPC_PORT": str(p.raft_rpc),
            "RAFT_JOIN": f"node1:{p.raft_rpc}",
            "GRPC_PORT": str(p.grpc),
            "DISABLE_TELEMETRY": "true",
            "GO_PROFILING_DISABLE": "true",
            "PROMETHEUS_MONITORING_ENABLED": "false",
            "LOG_LEVEL": "info",
            "QUERY_DEFAULTS_LIMIT": "25",
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180.0) -> LocalWeaviate:
        binary = self.binary or find_weaviate_binary()
        argv = [str(binary), "--scheme", "http", "--host", self.host, "--port", str(self.ports.http),
                "--read-timeout=600s", "--write-timeout=600s"]
        self._spawn(argv, self.environment(), cwd=self.data_dir)
        self._wait_ready(f"{self.url}/v1/.well-known/ready", timeout, ok=(200,))
        return self

    def cleanup(self) -> None:
        super().cleanup()
        if self._own_data is not None:
            self._own_data.cleanup()
            self._own_data = None

    def connect(self, **kwargs: Any) -> weaviate.WeaviateClient:
        from imagebind_vectorizer.weaviate.client import connect

        return connect(self.url, grpc_port=self.grpc_port, **kwargs)

    def __enter__(self) -> LocalWeaviate:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class LocalVectorizer(_ChildProcess):
    """Our inference server (`imagebind-vectorizer serve`) as a child process on a fixed port, so
    it can be stopped and started again at the same address Weaviate was told about."""

    name = "vectorizer"

    def __init__(self, serve_args: Sequence[str] = (), *, host: str = LOOPBACK, port: int = 0,
                 python: str | None = None, log_path: Path | None = None,
                 extra_env: Mapping[str, str] | None = None, grpc_port: int | None = None,
                 tls_ca_file: str | Path | None = None) -> None:
        """`tls_ca_file`: the server serves HTTPS (its serve_args name the certificate) signed by this CA."""
        super().__init__(log_path)
        self.serve_args = list(serve_args)
        self.host = host
        self.port = port or free_port(host)
        #: None: gRPC off; 0: a free port
        self.grpc_port = (grpc_port or free_port(host, avoid=[self.port])) if grpc_port is not None else None
        self.python = python or sys.executable
        self.extra_env = dict(extra_env or {})
        self.tls_ca_file = str(tls_ca_file) if tls_ca_file else None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_ca_file else 'http'}://{self.host}:{self.port}"

    @property
    def grpc_address(self) -> str | None:
        return f"{self.host}:{self.grpc_port}" if self.grpc_port else None

    def start(self, timeout: float = 900.0) -> LocalVectorizer:
        argv = [self.python, "-m", "imagebind_vectorizer", "serve", "--host", self.host, "--port", str(self.port),
                "--grpc-port", str(self.grpc_port or 0), *self.serve_args]
        env = {**os.environ, **self.extra_env}
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._spawn(argv, env)
        context = ssl.create_default_context(cafile=self.tls_ca_file) if self.tls_ca_file else None
        self._wait_ready(f"{self.url}/.well-known/ready", timeout, ok=(200, 204), context=context)
        return self

    def restart(self, timeout: float = 900.0) -> LocalVectorizer:
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> LocalVectorizer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
