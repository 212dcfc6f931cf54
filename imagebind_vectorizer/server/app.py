"""One process, one asyncio loop, both transports over one engine; signals and graceful shutdown.

Start order matters for Weaviate: the HTTP port opens first (liveness answers, readiness says 503
while the weights load), so Weaviate's start-up poll sees progress instead of refused connections.
On SIGTERM: readiness turns 503 and new work is refused, admitted work may finish within the grace
period; what is left then is abandoned (its callers get 503 JSON / UNAVAILABLE, a forward in
progress stops at its next block), the transports close, and the process exits 0 — within the
grace period plus a few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal

from aiohttp import web

from imagebind_vectorizer import logs
from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.engine.segments import Segmenter
from imagebind_vectorizer.server.connections import ConnectionGuard, connection_limit, protocol_logger
from imagebind_vectorizer.server.security import Security
from imagebind_vectorizer.server.weaviate_http import OPEN_REQUESTS_KEY, create_app
from imagebind_vectorizer.settings import Settings

log = logging.getLogger(__name__)

#: how long the unread rest of a refused body is drained before the connection closes
LINGER_S = 2.0
#: after the grace period, how long the transports get to send the last answers (503 /
#: UNAVAILABLE for abandoned work) before connections are closed
TRANSPORT_CLOSE_S = 2.0


class Server:
    """Both transports over one engine; usable from tests in-process or via `serve()`."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        # Before anything listens: a key file or certificate that does not load stops the start.
        self.security = Security.from_settings(settings)
        self.engine = engine or Engine(settings)
        self.segmenter = Segmenter(self.engine, settings)
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._grpc = None
        self.http_port: int | None = None
        self.grpc_port: int | None = None

    async def start_transports(self) -> None:
        s = self.settings
        tls = self.security.tls
        guard = ConnectionGuard(limit=connection_limit(s.max_connections, 2 if s.grpc_port else 1, "HTTP"),
                                idle_timeout_s=s.idle_timeout_s, header_timeout_s=s.header_timeout_s,
                                metrics=self.engine.metrics, tls=tls.http_context() if tls is not None else None)
        # lingering: after an early answer (408, 413, 429) the unread rest of a body is drained and
        # dropped for this long before the close, so the client reads the answer instead of a reset
        self._app = create_app(self.engine, guard, self.security.http)
        self._runner = web.AppRunner(self._app, access_log=None, handler_cancellation=True,
                                     keepalive_timeout=s.idle_timeout_s, lingering_time=LINGER_S,
                                     shutdown_timeout=TRANSPORT_CLOSE_S, logger=protocol_logger())
        await self._runner.setup()
        assert self._runner.server is not None
        # Our own listener instead of web.TCPSite: each connection's protocol is wrapped by the guard,
        # which also does the TLS handshake (so handshakes count against the connection limit).
        self._listener = await asyncio.get_running_loop().create_server(
            guard.protocol_factory(self._runner.server), s.host, s.port, reuse_address=True)
        self.http_port = self._listener.sockets[0].getsockname()[1]
        if s.grpc_port:
            from imagebind_vectorizer.server.grpc_service import start_grpc_server

            self._grpc, self.grpc_port = await start_grpc_server(self.engine, s, self.segmenter, self.security)
        log.info("listening", extra={"fields": {"http": f"{s.host}:{self.http_port}",
                                                "grpc": f"{s.host}:{self.grpc_port}" if self.grpc_port else None,
                                                "scheme": "https" if tls is not None else "http"}})
        log.info("security", extra={"fields": self.security.describe()})
        if not self.security.http.api.enabled and not _is_loopback(s.host):
            log.warning("no API keys: anyone who can reach this host's ports can use the server and read /metrics "
                        "(set --api-key-file, or keep it on a private network; see README, Security)")

    async def start(self) -> None:
        await self.start_transports()
        await self.engine.start()

    async def stop(self) -> bool:
        """Drain, then close the transports. True when all admitted work finished in time."""
        grace = self.settings.shutdown_grace_s
        finished = await self.engine.drain(grace)
        # The grace is over. Requests still in progress (in the engine, or still sending their body)
        # are answered now: 503 JSON over HTTP; gRPC's stop cancels its calls with UNAVAILABLE. The
        # engine has failed what it still held; the model thread stops after its current step.
        if self._app is not None and (abandoned := self._app[OPEN_REQUESTS_KEY].abandon()):
            log.warning("grace period over: answering %d HTTP requests still in progress with 503", abandoned)
        closing = [self.engine.close()]
        if self._grpc is not None:
            closing.append(self._grpc.stop(grace=TRANSPORT_CLOSE_S))
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            closing.append(self._runner.cleanup())
        await asyncio.gather(*closing)
        self.segmenter.close()
        return finished


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def run(settings: Settings, engine: Engine | None = None) -> int:
    """Serve until SIGTERM/SIGINT; the exit code (0 after a drain, 1 when loading failed)."""
    server = Server(settings, engine)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start_transports()
    loader = asyncio.ensure_future(server.engine.start())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({loader, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if loader.done() and loader.exception() is not None:
        log.error("start-up failed: %s", loader.exception())
        stopper.cancel()
        await server.stop()
        return 1
    if not loader.done():  # signalled while loading: nothing was admitted yet
        loader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await loader
    else:
        await stopper
    log.info("shutting down", extra={"fields": {"grace_s": settings.shutdown_grace_s}})
    finished = await server.stop()
    log.info("stopped", extra={"fields": {"drained": finished}})
    return 0


def serve(settings: Settings) -> int:
    logs.configure(settings.log_level, settings.log_format)
    return asyncio.run(run(settings))
