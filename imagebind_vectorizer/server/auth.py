"""Who may call the server: API keys, checked at the transports' edge (an aiohttp middleware and a
gRPC interceptor); the engine never sees credentials.

A key is accepted as the password of HTTP Basic authentication (what stock Weaviate sends when
BIND_INFERENCE_API carries `user:key@`, whatever the user name), as `Authorization: Bearer <key>`,
and on gRPC as `authorization: Bearer <key>` metadata. Several keys may be valid at once, so a key
can be rotated without downtime: add the new one, move the clients, remove the old one. Keys come
from a setting and from a file (one per line; a mounted Kubernetes Secret), which is re-read when it
changes on disk. Keys are compared in constant time and never logged."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson
from aiohttp import web

from imagebind_vectorizer.errors import ConfigError
from imagebind_vectorizer.server.watch import FileState, Throttle, file_states

log = logging.getLogger(__name__)

#: URL-safe characters only, so a key can sit verbatim in BIND_INFERENCE_API (a key that needs
#: percent-encoding would make Go print the whole URL, key included, in a parse error)
KEY_PATTERN = re.compile(r"[A-Za-z0-9._~-]+")
MIN_KEY_CHARS = 16
MAX_KEY_CHARS = 512
#: at most one "rejected" log line per transport in this many seconds (a flood must not flood the logs)
REJECT_LOG_INTERVAL_S = 10.0
REALM = "imagebind-vectorizer"
CHALLENGE = f'Basic realm="{REALM}", Bearer realm="{REALM}"'


def generate_key() -> str:
    """A new random key: 256 bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def parse_keys(text: str, source: str) -> tuple[str, ...]:
    """Keys separated by newlines or commas; blank lines and lines starting with # are skipped."""
    keys: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for key in (part.strip() for part in line.split(",")):
            if key:
                check_key(key, source)
                keys.append(key)
    return tuple(keys)


def check_key(key: str, source: str) -> None:
    """Refuse keys that are short, long, or not URL-safe; the message never contains the key."""
    if not MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS:
        raise ConfigError(f"{source}: a key has {len(key)} characters; keys need {MIN_KEY_CHARS} to {MAX_KEY_CHARS} "
                          "(generate one with `imagebind-vectorizer api-key`)")
    if not KEY_PATTERN.fullmatch(key):
        raise ConfigError(f"{source}: a key contains characters other than A-Z a-z 0-9 . _ ~ - (needed so it can "
                          "sit verbatim in Weaviate's BIND_INFERENCE_API URL)")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """The keys one kind of caller may present: fixed ones plus the lines of `file`.

    The file is looked at again on use (watch.py: at most once per second) and re-read when its
    identity, size or modification time changed (a Kubernetes Secret volume swaps a symlink, an
    editor rewrites the file). A file that cannot be read or holds no valid key keeps the previous
    keys and logs a warning: a rotation caught half-way must never open the server."""

    def __init__(self, keys: Sequence[str] = (), file: str | Path | None = None, *, name: str = "API key",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.file = Path(file) if file else None
        for key in keys:
            check_key(key, name)
        self._fixed = tuple(_digest(k) for k in keys)
        self._from_file: tuple[bytes, ...] = ()
        self._file_state: tuple[FileState, ...] | None = None
        self._last_problem: str | None = None
        self._throttle = Throttle(clock=clock)
        if self.file is not None:
            # at start-up a bad file is an error, not a warning
            self._file_state, self._from_file = self._read_file()

    @property
    def enabled(self) -> bool:
        return bool(self._fixed) or self.file is not None

    def __len__(self) -> int:
        self.refresh()
        return len(self._fixed) + len(self._from_file)

    def matches(self, presented: str) -> bool:
        """Whether `presented` is one of the keys. Every key is compared (constant time per key, no
        early exit), on fixed-length digests, so timing tells neither which key nor its length."""
        self.refresh()
        candidate = _digest(presented)
        found = False
        for digest in (*self._fixed, *self._from_file):
            found |= hmac.compare_digest(candidate, digest)
        return found

    def refresh(self) -> None:
        if self.file is None or not self._throttle.due():
            return
        try:
            if file_states([self.file]) == self._file_state:
                return
            state, keys = self._read_file()
        except (OSError, ConfigError) as exc:
            if str(exc) != self._last_problem:  # said once per problem, retried every interval
                log.warning("keeping the previous keys: %s", exc, extra={"fields": {"keys": self.name}})
            self._last_problem = str(exc)
            return
        self._from_file, self._file_state, self._last_problem = keys, state, None
        log.info("key file re-read", extra={"fields": {"keys": self.name, "file": str(self.file),
                                                        "count": len(keys)}})

    def _read_file(self) -> tuple[tuple[FileState, ...], tuple[bytes, ...]]:
        assert self.file is not None
        try:
            before = file_states([self.file])
            text = self.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.name} file {self.file}: {exc}") from None
        keys = parse_keys(text, f"{self.name} file {self.file}")
        if not keys:
            raise ConfigError(f"{self.name} file {self.file} holds no key")
        return before, tuple(_digest(k) for k in keys)


def presented_key(authorization: str | Sequence[str] | None) -> str | None:
    """The key in an Authorization value: `Bearer <key>`, or the password of `Basic base64(user:key)`
    (the user name is ignored). None when absent or malformed, and when several values were sent:
    the field is not a list, and which of them counted would be a choice a proxy in front of us may
    make differently (HTTP header lines or gRPC metadata entries repeated)."""
    if not isinstance(authorization, str):
        if not authorization or len(authorization) != 1:
            return None
        authorization = authorization[0]
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        _user, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


class RejectLog:
    """Rejections are counted by the caller's metrics; this logs at most one line per interval per
    transport, with the count since the last line, the peer and the reason (never the credentials)."""

    def __init__(self, interval_s: float = REJECT_LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def rejected(self, transport: str, peer: str | None, target: str, reason: str) -> None:
        now = self._clock()
        if now - self._last.get(transport, -self.interval_s) < self.interval_s:
            self._suppressed[transport] = self._suppressed.get(transport, 0) + 1
            return
        self._last[transport] = now
        log.warning("request rejected: %s", reason, extra={"fields": {
            "transport": transport, "peer": peer, "target": target,
            "similar_rejections_not_logged": self._suppressed.pop(transport, 0)}})


# HTTP ---------------------------------------------------------------------------------------------
PROBE_PATHS = frozenset({"/.well-known/live", "/.well-known/ready"})
METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class HttpAccess:
    """Which key ring guards which route (None: open). Probes are open unless `probes_open` is off,
    so kubelet and Weaviate's start-up poll work without credentials; /metrics takes its own keys
    when given (a scraper's key then cannot vectorize), else the API keys, unless `metrics_open`."""

    api: KeyRing
    metrics: KeyRing | None = None
    probes_open: bool = True
    metrics_open: bool = False

    @property
    def enabled(self) -> bool:
        return self.api.enabled or (self.metrics is not None and self.metrics.enabled)

    def ring_for(self, route: str) -> KeyRing | None:
        if route in PROBE_PATHS and self.probes_open:
            return None
        if route == METRICS_PATH:
            if self.metrics_open:
                return None
            if self.metrics is not None and self.metrics.enabled:
                return self.metrics
        return self.api if self.api.enabled else None


Rejected = Callable[[web.Request, str], None]


def http_auth_middleware(access: HttpAccess, on_reject: Rejected | None = None,
                         reject_log: RejectLog | None = None) -> Any:
    """An aiohttp middleware answering 401 (JSON `{"error": ...}` and WWW-Authenticate) before any
    body is read. Routes are judged by the resource the router matched, never by the raw path, so
    `/.well-known/ready/../vectorize` cannot pass as a probe; unknown paths need a key too."""
    reject_log = reject_log or RejectLog()

    @web.middleware
    async def authenticate(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else ""
        ring = access.ring_for(route)
        if ring is None:
            return await handler(request)
        key = presented_key(request.headers.getall("Authorization", []))
        if key is not None and ring.matches(key):
            return await handler(request)
        reason = "missing or malformed credentials" if key is None else f"wrong {ring.name}"
        reject_log.rejected("http", request.remote, f"{request.method} {route or request.path}", reason)
        if on_reject is not None:
            on_reject(request, reason)
        message = (f"authentication required: send the {ring.name} as the password of HTTP Basic authentication "
                   "(http://user:KEY@host in Weaviate's BIND_INFERENCE_API) or as `Authorization: Bearer KEY`"
                   if key is None else f"invalid {ring.name}")
        return web.Response(body=orjson.dumps({"error": message}), status=401, content_type="application/json",
                            headers={"WWW-Authenticate": CHALLENGE})

    return authenticate


# gRPC ---------------------------------------------------------------------------------------------
HEALTH_PREFIX = "/grpc.health.v1.Health/"


class GrpcAuthInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED unless the call's `authorization` metadata carries a valid key (Bearer, or
    Basic like HTTP). Methods starting with one of `open_prefixes` (the health service, by default)
    pass without one."""

    def __init__(self, ring: KeyRing, *, open_prefixes: Sequence[str] = (HEALTH_PREFIX,),
                 on_reject: Callable[[str, str], None] | None = None, reject_log: RejectLog | None = None) -> None:
        self.ring = ring
        self.open_prefixes = tuple(open_prefixes)
        self.on_reject = on_reject
        self.reject_log = reject_log or RejectLog()

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        method = details.method or ""
        if not self.ring.enabled or method.startswith(self.open_prefixes):
            return await continuation(details)
        key = presented_key([v for k, v in (details.invocation_metadata or ())
                             if k.lower() == "authorization" and isinstance(v, str)])
        if key is not None and self.ring.matches(key):
            return await continuation(details)
        reason = "missing or malformed credentials" if key is None else f"wrong {self.ring.name}"
        self.reject_log.rejected("grpc", None, method, reason)
        if self.on_reject is not None:
            self.on_reject(method, reason)
        message = (f"authentication required: send `authorization: Bearer <{self.ring.name}>` metadata"
                   if key is None else f"invalid {self.ring.name}")
        handler = await continuation(details)
        return _denying_handler(handler, message)


def _denying_handler(handler: grpc.RpcMethodHandler | None, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that fails with UNAUTHENTICATED without reading
    the request stream (requests are passed undecoded)."""

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - abort raises; this makes it an async generator

    if handler is None or not (handler.request_streaming or handler.response_streaming):
        return grpc.unary_unary_rpc_method_handler(deny)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    return grpc.unary_stream_rpc_method_handler(deny_stream)

