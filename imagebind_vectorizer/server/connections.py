"""HTTP connections under guard: an idle timeout, a header timeout, a cap on open connections, an
answer for clients that half-close their side after sending a request, and the end of a request
whose client closed its connection.

Why a wrapper around aiohttp's protocol (and not another server library): aiohttp 3.14 closes a
keep-alive connection left idle (`keepalive_timeout`, armed from the connection's start), but it
has no header-read or body-read timeout, no connection limit, and its protocol's `eof_received`
returns None, so asyncio closes the socket when a client shuts down its write side and the
handler is cancelled: the client never gets its answer. uvicorn has the same gaps (its keep-alive
timer is reset by every received byte, so a client dripping header bytes holds its connection for
ever), and a switch would also rewrite the handlers, the auth middleware and the TLS wiring. So
each connection's aiohttp protocol is wrapped: the wrapper sees every byte and the EOF before
aiohttp does, keeps the timers and the registry, and a middleware tells it when a request's
handler starts and ends. Only asyncio's protocol methods and aiohttp's public `web.Server`
protocol factory are used. The body-read timeout and the byte budget live with the body reader
(`server/http_body.py`), where the bytes are counted.

Phases of a connection: HANDSHAKE (TLS only: the handshake, bounded by `header_timeout_s`),
HEADERS (a new connection, or a request's first bytes have arrived but not all its headers:
`header_timeout_s` from the accept or the first byte, then a 408 and the connection is closed, as
Go's ReadHeaderTimeout does), REQUEST (headers in; the handler reads the body under its own timeout
and answers) and IDLE (a kept-alive connection between requests: `idle_timeout_s`).

Answers are bounded too: a client that stops reading (its receive window stays shut, so the answer
waits in the send buffers) is given `idle_timeout_s` in which its connection must take some of it;
otherwise the connection is aborted. Without this its connection, file descriptor and answer were
kept for ever: closing a transport waits for its buffer to drain, and no timer ran once the handler
had returned.

TLS is started by the guard on each accepted connection (`loop.start_tls`), not by the listener:
a connection counts against the limit from its accept, handshake included, so a flood of
connections that never finish their handshake cannot take more file descriptors than the limit
allows (with TLS done by the listener, the guard would see a connection only after its handshake).

A client's EOF during a request whose body is complete means one of two things that TCP cannot tell
apart until the server writes: the client half-closed and still reads the answer, or it closed the
connection (Weaviate's Go client does this when its timeout fires) and nobody waits for the work.
So the server asks: it writes interim `HTTP/1.1 100 Continue` answers (`PROBE_DELAYS_S`). A client
that half-closed skips them (HTTP/1.1 clients must accept 1xx answers they did not ask for, RFC 9110
15.2: Go's net/http, Python's http.client, aiohttp and curl do) and reads the final answer. A closed
socket answers the first probe with a reset, so the next write fails, the connection is lost, the
handler is cancelled and the engine drops the request's items.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import resource
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError

from imagebind_vectorizer.engine.metrics import EngineMetrics

log = logging.getLogger(__name__)

#: file descriptors kept free of client connections: listening sockets, model and media files,
#: decoder workers' pipes, logging
RESERVED_FDS = 64
#: what ends a request's headers (a bare LF pair too: seen early is harmless, the parser decides)
_HEADER_ENDS = (b"\r\n\r\n", b"\n\n")
#: at most one log line about malformed requests in this many seconds
MALFORMED_LOG_INTERVAL_S = 10.0
#: the interim answer: to `Expect: 100-continue` (written once the request's cheap checks passed),
#: and the probe of a client that sent EOF
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: seconds after a client's EOF (request complete, answer pending) at which a probe is written. A
#: closed peer answers the first with a reset within a round trip; the later ones find it (on
#: loopback or in a cluster, the second does, 0.25 s after the EOF).
PROBE_DELAYS_S = (0.0, 0.25, 1.0, 3.0)
#: 1xx answers per request, the Expect answer included: Go's client before 1.24 failed a request on
#: its sixth 1xx (`max1xxResponses = 5`; since then it counts their bytes against its header limit)
MAX_INTERIM_ANSWERS = 4


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    IDLE = "idle"
    HEADERS = "headers"
    REQUEST = "request"


def raw_json_response(status: int, reason: str, message: str, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 answer with a JSON error body and `Connection: close`, written straight to
    a socket where no aiohttp handler runs (a request whose headers never finished, a connection
    over the limit). Weaviate reads errors only from a JSON body `{"error": ...}`."""
    body = orjson.dumps({"error": message})
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", f"Content-Length: {len(body)}",
            "Connection: close"]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse at error level with the parser's exception, whose text
    quotes the offending bytes (a too-long or malformed `Authorization` header, key and all) and a
    traceback, once per request. Installed on the logger aiohttp's protocol is given, it drops those
    records and says instead, at most once per interval, that malformed requests were answered 400,
    with the peer, the error's class and how many were not logged: never the client's bytes."""

    def __init__(self, interval_s: float = MALFORMED_LOG_INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._next = 0.0
        self._unlogged = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True  # anything else (our bugs) keeps its traceback
        now = time.monotonic()
        if now < self._next:
            self._unlogged += 1
            return False
        self._next = now + self.interval_s
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.msg, record.args = "malformed HTTP request answered %s (%s)", (exc.code, type(exc).__name__)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.fields = {"peer": peer, "similar_requests_not_logged": self._unlogged}  # type: ignore[attr-defined]
        self._unlogged = 0
        return True


def protocol_logger() -> logging.Logger:
    """The logger to give aiohttp's protocol (`AppRunner(logger=...)`): malformed requests filtered."""
    logger = logging.getLogger(f"{__name__}.protocol")
    if not any(isinstance(f, MalformedRequests) for f in logger.filters):
        logger.addFilter(MalformedRequests())
    return logger


def open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (Go's runtime does the same) and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_limit(wanted: int, transports: int, name: str) -> int:
    """`wanted` connections for the transport `name`, lowered so that all `transports` together stay
    inside the open-file limit with `RESERVED_FDS` to spare: past that limit `accept()` fails and
    asyncio stops accepting for a second at a time, liveness probes included."""
    fitting = max(1, (open_file_limit() - RESERVED_FDS) // max(transports, 1))
    if fitting < wanted:
        log.warning("the open-file limit leaves room for %d %s connections (max_connections is %d)",
                    fitting, name, wanted)
    return min(wanted, fitting)


class ConnectionGuard:
    """The registry and timers of one HTTP server's connections."""

    def __init__(self, *, limit: int, idle_timeout_s: float, header_timeout_s: float,
                 metrics: EngineMetrics | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.limit = limit
        self.idle_timeout_s = idle_timeout_s
        self.header_timeout_s = header_timeout_s
        self.metrics = metrics
        #: with a context, each accepted connection is switched to TLS before aiohttp sees it
        self.tls = tls
        self._open: dict[GuardedConnection, None] = {}  # insertion-ordered
        self._by_transport: dict[asyncio.BaseTransport, GuardedConnection] = {}

    def __len__(self) -> int:
        return len(self._open)

    def protocol_factory(self, server: web.Server) -> Callable[[], GuardedConnection]:
        """What `loop.create_server` calls for each accepted connection."""
        return lambda: GuardedConnection(self, server())

    # Bookkeeping ---------------------------------------------------------------------------------
    def _admit(self, connection: GuardedConnection) -> bool:
        if len(self._open) >= self.limit:
            victim = self._longest_waiting()
            if victim is None:
                self._count_closed("refused")
                return False
            victim.close("evicted")
        self._open[connection] = None
        self._gauge()
        return True

    def _longest_waiting(self) -> GuardedConnection | None:
        """The connection that has waited longest without a request in progress (idle, or still
        dripping headers): the cheapest to close, and most likely a slow or abandoned client."""
        waiting = [c for c in self._open if c.phase is not Phase.REQUEST]
        return min(waiting, key=lambda c: c.since) if waiting else None

    def _register_transport(self, connection: GuardedConnection, transport: asyncio.BaseTransport) -> None:
        self._by_transport[transport] = connection

    def _forget(self, connection: GuardedConnection) -> None:
        self._open.pop(connection, None)
        if connection.transport is not None:
            self._by_transport.pop(connection.transport, None)
        self._gauge()

    def _count_closed(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.connections_closed.labels("http", reason).inc()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.connections.labels("http").set(len(self._open))

    def connection_of(self, request: web.BaseRequest) -> GuardedConnection | None:
        transport = request.transport
        return self._by_transport.get(transport) if transport is not None else None

    # The middleware: a handler's start and end -----------------------------------------------------
    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def track_requests(request: web.Request, handler: Any) -> web.StreamResponse:
            connection = self.connection_of(request)
            if connection is None:  # not accepted through the guard (e.g. aiohttp's test client)
                return await handler(request)
            request[CONNECTION_KEY] = connection
            connection.request_started(request)
            try:
                response = await handler(request)
            finally:
                connection.request_finished()
            if connection.read_closed:  # the client will send nothing more: answer, then close
                response.force_close()
            return response

        return track_requests


class GuardedConnection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, timers and phase outside."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.phase = Phase.IDLE
        self.since = 0.0
        self.read_closed = False
        self._refused = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._got_bytes = False
        self._request: web.BaseRequest | None = None
        self._handshake: asyncio.Task[None] | None = None
        #: what arrived or happened between the end of the TLS handshake and our taking over
        self._early: list[bytes] = []
        self._early_eof = False
        self._interim_answers = 0
        self._probe: asyncio.TimerHandle | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes waiting to be sent at the last look of the flush timer

    # asyncio.Protocol ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self.guard._admit(self):
            self._refused = True
            if self.guard.tls is None:  # on a TLS port a plain-text answer would only be noise
                transport.write(raw_json_response(503, "Service Unavailable",
                                                  f"too many open connections (limit {self.guard.limit}); "
                                                  "retry later", retry_after=1))
            transport.close()
            return
        if self.guard.tls is not None:
            self.phase, self.since = Phase.HANDSHAKE, asyncio.get_running_loop().time()
            transport.pause_reading()  # the handshake's bytes are for the TLS layer start_tls puts in place
            self._handshake = asyncio.ensure_future(self._start_tls(transport, self.guard.tls))
            return
        self._established(transport)

    async def _start_tls(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        if self._closed:  # lost or evicted before the handshake began
            return
        try:
            secured = await loop.start_tls(transport, self, context, server_side=True,
                                           ssl_handshake_timeout=self.guard.header_timeout_s)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError and ConnectionError are OSErrors
            secured = None
            log.debug("TLS handshake failed", extra={"fields": {"error": type(exc).__name__}})
        except Exception:  # not the client's doing: say so, and still let the connection go
            secured = None
            log.exception("TLS handshake could not be run")
        if self._closed:  # evicted while shaking hands
            if secured is not None:
                secured.close()
            return
        if secured is None:  # failed, or returned None because the connection was lost meanwhile
            transport.close()
            self._closed = True
            self.guard._forget(self)
            self.guard._count_closed("tls_handshake")
            return
        self._established(secured)
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)
        if self._early_eof:
            self.eof_received()

    def _established(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.guard._register_transport(self, transport)
        self._enter(Phase.HEADERS)  # the first request's headers are due within the header timeout
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused or self._closed:
            return
        if self.phase is Phase.HANDSHAKE:  # decrypted bytes that came with the handshake's last flight
            self._early.append(data)
            return
        if self.phase is Phase.IDLE:
            self._enter(Phase.HEADERS)
            self._tail = b""
        if self.phase is Phase.HEADERS:
            self._got_bytes = True
            window = self._tail + data
            if any(end in window for end in _HEADER_ENDS):
                self._enter(Phase.REQUEST, timer=False)
            else:
                self._tail = window[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        """The client shut down its sending side, or closed the connection. A request whose headers
        are in keeps the write side open: the body reader sees the end of the body, and once the
        body is complete, probes find out whether anyone still reads the answer. Otherwise nothing
        more can come and the connection closes."""
        if self._refused or self._closed:
            return None
        if self.phase is Phase.HANDSHAKE:
            self._early_eof = True
            return None
        self.read_closed = True
        tls = self.transport is not None and self.transport.get_extra_info("sslcontext") is not None
        if self.phase is Phase.REQUEST and not tls:  # TLS has no half-close: asyncio closes regardless
            self._end_body()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._cancel_probe()
        self._cancel_flush_timer()
        if self._refused:
            return
        if self.phase is Phase.HANDSHAKE and self._handshake is not None:  # gone before TLS was set up
            if not self._closed:
                self._closed = True
                self.guard._forget(self)
                self.guard._count_closed("tls_handshake")
            return
        self._closed = True
        self.guard._forget(self)
        if self._request is not None and (exc is not None or self.read_closed):
            self.guard._count_closed("client_gone")  # reset, closed (found by a probe; TLS: at EOF)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._watch_flush()  # the client is not taking the answer as fast as it is written
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self._cancel_flush_timer()
        self.inner.resume_writing()

    # Requests --------------------------------------------------------------------------------------
    def request_started(self, request: web.BaseRequest) -> None:
        self._request = request
        self._interim_answers = 0
        self._enter(Phase.REQUEST, timer=False)
        if self.read_closed:
            self._end_body()

    def request_finished(self) -> None:
        self._request = None
        self._cancel_probe()
        if not self._closed:
            self._enter(Phase.IDLE)

    def _end_body(self) -> None:
        """After the client's EOF no body byte can follow: let a waiting body reader see the end
        (it answers 400 for a body shorter than its Content-Length). A complete request is probed."""
        request = self._request
        if request is None:
            return
        if not request.content.is_eof():
            request.content.feed_eof()
        elif self._probe is None and request.version >= HttpVersion11:  # no 1xx to HTTP/1.0 clients
            self._probe = asyncio.get_running_loop().call_soon(self._send_probe, 0)

    # Interim answers -------------------------------------------------------------------------------
    def send_interim(self) -> bool:
        """Write `100 Continue` unless this request had its share of 1xx answers or the
        connection is closing. Only while the handler runs: the final answer is written after it."""
        if self._request is None or self._closed or self.transport is None or self.transport.is_closing() \
                or self._interim_answers >= MAX_INTERIM_ANSWERS:
            return False
        self._interim_answers += 1
        self.transport.write(CONTINUE)  # a failed write (reset) loses the connection: the handler is cancelled
        return True

    def _send_probe(self, index: int) -> None:
        self._probe = None
        if not self.send_interim() or index + 1 >= len(PROBE_DELAYS_S):
            return
        delay = PROBE_DELAYS_S[index + 1] - PROBE_DELAYS_S[index]
        self._probe = asyncio.get_running_loop().call_later(delay, self._send_probe, index + 1)

    def _cancel_probe(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    # Timers ----------------------------------------------------------------------------------------
    def _enter(self, phase: Phase, *, timer: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self.phase = phase
        self.since = loop.time()
        self._cancel_timer()
        if timer:
            timeout = self.guard.idle_timeout_s if phase is Phase.IDLE else self.guard.header_timeout_s
            self._timer = loop.call_later(timeout, self._expired, phase)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, phase: Phase) -> None:
        self._timer = None
        if self._closed or self.phase is not phase:
            return
        if phase is Phase.HEADERS:
            answer = raw_json_response(408, "Request Timeout", "request headers not received within "
                                       f"{self.guard.header_timeout_s:g} s") if self._got_bytes else None
            self.close("header_timeout", answer)
        elif self._unsent_bytes():  # still sending the last answer: idle only once it moves no more
            self._watch_flush()
            self._timer = asyncio.get_running_loop().call_later(self.guard.idle_timeout_s, self._expired, phase)
        else:
            self.close("idle_timeout")

    # Answers the client does not take --------------------------------------------------------------
    def _unsent_bytes(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def _watch_flush(self) -> None:
        """Check every `idle_timeout_s` that the client took some of what waits to be sent."""
        if self._flush_timer is None and self.transport is not None:
            self._unsent = self._unsent_bytes()
            self._flush_timer = asyncio.get_running_loop().call_later(self.guard.idle_timeout_s, self._check_flush)

    def _check_flush(self) -> None:
        self._flush_timer = None
        unsent = self._unsent_bytes()
        if not unsent or self.transport is None:
            return
        if unsent < self._unsent:  # some went out: a slow reader, not a stopped one
            self._watch_flush()
            return
        if not self._closed:
            self._closed = True
            self._cancel_timer()
            self.guard._forget(self)
            self.guard._count_closed("write_timeout")
        log.debug("aborting connection", extra={"fields": {"reason": "write_timeout", "unsent_bytes": unsent}})
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # a reset: else the kernel keeps trying to deliver the unsent answer
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()  # connection_lost follows: aiohttp stops writing, the descriptor is freed

    def _cancel_flush_timer(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None

    def close(self, reason: str, answer: bytes | None = None) -> None:
        """Close the connection now (an answer, if any, is flushed first)."""
        if self._closed or self.transport is None:
            return
        self._closed = True
        self._cancel_timer()
        self._cancel_probe()
        self.guard._forget(self)
        self.guard._count_closed(reason)
        log.debug("closing connection", extra={"fields": {"reason": reason, "phase": self.phase.value}})
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()  # waits for what is unsent to go out: only as long as it moves
        if self._unsent_bytes():
            self._watch_flush()


#: where the guard leaves a request's connection, for `send_continue`
CONNECTION_KEY = web.RequestKey("connection", GuardedConnection)


def expects_continue(request: web.BaseRequest) -> bool:
    return request.version >= HttpVersion11 and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue"


async def defer_continue(request: web.Request) -> web.StreamResponse | None:
    """The route's expect handler: aiohttp's default answers `100 Continue` as soon as the headers
    are in, before any middleware (the API key) or handler check runs, so a client that would be
    refused uploads its body first. Here the 100 waits for the handler (`send_continue`); an
    expectation other than 100-continue gets 417."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if expect.lower() == "100-continue" or request.version < HttpVersion11:  # HTTP/1.0 ignores Expect
        return None
    response = web.Response(body=orjson.dumps({"error": f"unsupported Expect: {expect[:100]}"}), status=417,
                            content_type="application/json")
    response.force_close()
    return response


def send_continue(request: web.BaseRequest) -> None:
    """Answer `Expect: 100-continue` now: the request passed the checks that need no body."""
    if not expects_continue(request):
        return
    connection = request.get(CONNECTION_KEY)
    if connection is not None:
        connection.send_interim()
    elif request.transport is not None:  # a connection not accepted through the guard
        request.transport.write(CONTINUE)
