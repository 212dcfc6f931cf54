"""Weaviate's multi2vec-bind contract over HTTP: POST /vectorize, GET /meta, /.well-known/{live,ready},
plus GET /metrics. A thin layer: decode JSON and base64, call the engine, encode the answer.

Facts that shape it (see the README): Weaviate sends no Content-Type header, omits empty lists,
sends one object per request with many requests in flight, reads an error only from a JSON body
`{"error": ...}` and counts exactly 200 as success, and calls /meta on each of its own readiness
checks."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.engine.scheduler import PRIORITY_KEY, Priority
from imagebind_vectorizer.errors import (
    DeadlineExceededError,
    ImageBindError,
    InputError,
    NotReadyError,
    OverloadedError,
)
from imagebind_vectorizer.kinds import WEAVIATE_KIND_ORDER, InputKind
from imagebind_vectorizer.runtime.info import ModelInfo
from imagebind_vectorizer.server.auth import HttpAccess, http_auth_middleware
from imagebind_vectorizer.server.connections import ConnectionGuard, defer_continue
from imagebind_vectorizer.server.http_body import BodyRefused, InflightBytes, read_body
from imagebind_vectorizer.server.vectorize_json import BodyLimits, parse_vectorize_body

log = logging.getLogger(__name__)

RESPONSE_FIELDS: dict[InputKind, str] = {kind: kind.facts.response_key for kind in WEAVIATE_KIND_ORDER}
FIELD_OF_KIND: dict[InputKind, str] = {kind: kind.facts.request_key for kind in WEAVIATE_KIND_ORDER}
ENGINE_KEY = web.AppKey("engine", Engine)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status=status,
                        content_type="application/json", headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": message}, status=status, headers=headers)


def create_app(engine: Engine, guard: ConnectionGuard | None = None,
               access: HttpAccess | None = None) -> web.Application:
    """The HTTP app; with `guard`, connections accepted through it are timed and counted (its
    middleware goes first, so it sees every request's start and end); with `access`, requests
    without a valid key get 401 before a body is read (inside `_observe`, so rejections are counted)."""
    middlewares: list[Any] = [guard.middleware()] if guard is not None else []
    middlewares.append(_observe)
    if access is not None and access.enabled:
        middlewares.append(http_auth_middleware(access))
    app = web.Application(client_max_size=engine.settings.max_request_bytes, middlewares=middlewares)
    app[ENGINE_KEY] = engine
    app[INFLIGHT_KEY] = InflightBytes(engine.settings.max_inflight_bytes)
    app[OPEN_REQUESTS_KEY] = OpenRequests()
    # `Expect: 100-continue` is answered by the handler once the key, readiness, admission and the
    # declared size are checked, not by aiohttp before any of them runs
    app.router.add_post("/vectorize", vectorize, expect_handler=defer_continue)
    app.router.add_get("/meta", meta)
    app.router.add_get("/.well-known/live", live)
    app.router.add_get("/.well-known/ready", ready)
    app.router.add_get("/metrics", metrics)
    return app


@web.middleware
async def _observe(request: web.Request, handler: Any) -> web.StreamResponse:
    engine = request.app[ENGINE_KEY]
    started = time.monotonic()
    endpoint = request.match_info.route.resource.canonical if request.match_info.route.resource else "unknown"
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # e.g. 404, 405, 413 from aiohttp: still JSON for Weaviate
        message = "request body is larger than the limit of " \
                  f"{engine.settings.max_request_bytes} bytes" if exc.status == 413 else exc.reason
        response = error_response(exc.status, message)
    engine.metrics.requests.labels("http", endpoint, str(response.status)).inc()
    if endpoint == "/vectorize":
        engine.metrics.request_seconds.labels("http", endpoint).observe(time.monotonic() - started)
    return response


class OpenRequests:
    """The `/vectorize` handlers in progress. When the shutdown grace period is over, `abandon()`
    cancels them and each answers 503 JSON: a client cut off at the end of the grace learns why
    (and Weaviate reads the error), instead of seeing its connection dropped."""

    def __init__(self) -> None:
        self.handlers: set[asyncio.Task[Any]] = set()
        self.abandoned = False

    def abandon(self) -> int:
        self.abandoned = True
        for handler in self.handlers:
            handler.cancel()
        return len(self.handlers)


INFLIGHT_KEY = web.AppKey("inflight", InflightBytes)
OPEN_REQUESTS_KEY = web.AppKey("open_requests", OpenRequests)


async def vectorize(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    settings = engine.settings
    open_requests = request.app[OPEN_REQUESTS_KEY]
    try:  # before reading a body that could not be served
        priority = Priority.parse(request.headers.get(PRIORITY_KEY))
        engine.check_admission(priority=priority)  # 429 at once when no kind could take even one item
    except NotReadyError as exc:
        return _unavailable(str(exc))
    except (InputError, OverloadedError) as exc:
        response = error_response(400, str(exc)) if isinstance(exc, InputError) else \
            error_response(429, str(exc), headers={"Retry-After": "1"})
        response.force_close()  # the body was not read: this connection cannot carry another request
        return response
    handler = asyncio.current_task()
    assert handler is not None
    open_requests.handlers.add(handler)
    try:
        async with read_body(request, request.app[INFLIGHT_KEY], max_bytes=settings.max_request_bytes,
                             timeout_s=settings.body_timeout_s) as body:
            return await _vectorize(body, engine, priority)
    except BodyRefused as exc:
        engine.metrics.errors.labels("request", exc.reason).inc()
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        response = error_response(exc.status, exc.message, headers=headers)
        response.force_close()  # the rest of the body was not read: this connection cannot carry another request
        return response
    except asyncio.CancelledError:
        if not open_requests.abandoned:  # the client went away
            raise
        engine.metrics.errors.labels("request", "shutdown").inc()
        return _unavailable("the server is shutting down and its grace period is over; retry on another replica")
    finally:
        open_requests.handlers.discard(handler)


def _unavailable(message: str) -> web.Response:
    response = error_response(503, message, headers={"Retry-After": "5"})
    response.force_close()
    return response


async def _vectorize(body: bytearray, engine: Engine, priority: Priority) -> web.Response:
    # The raw body whatever the Content-Type: Weaviate sends none.
    try:
        parsed = await parse_vectorize_body(  # the engine refuses what it cannot admit before anything is decoded
            body, BodyLimits.of(engine.settings),
            before_decoding=lambda counts: engine.check_admission(counts, priority=priority))
        vectors = await engine.embed_request(parsed, priority=priority)
    except InputError as exc:
        if exc.kind is not None:  # the engine's (kind, index): name the request field
            exc = exc.named(FIELD_OF_KIND[exc.kind], exc.index)
        log.info("bad input", extra={"fields": {"status": 400, "reason": exc.reason, "error": str(exc)}})
        return error_response(400, str(exc))
    except OverloadedError as exc:
        return error_response(429, str(exc), headers={"Retry-After": "1"})
    except NotReadyError as exc:
        return error_response(503, str(exc), headers={"Retry-After": "5"})
    except DeadlineExceededError as exc:
        return error_response(503, str(exc))
    except ImageBindError as exc:
        log.exception("request failed")
        return error_response(500, f"server error: {exc}")
    except Exception as exc:
        log.exception("request failed")
        return error_response(500, f"server error: {type(exc).__name__}: {exc}")
    answer = {RESPONSE_FIELDS[kind]: vectors.get(kind, []) for kind in RESPONSE_FIELDS}
    return json_response(answer)


def meta_json(info: ModelInfo | None, state: str, error: str | None) -> dict[str, Any]:
    """`GET /meta`: Weaviate shows it as the module's meta and our clients read it; keep the keys."""
    if info is None:
        return {"model": ModelInfo.MODEL, "version": ModelInfo.VERSION, "server": ModelInfo.SERVER,
                "state": state, "error": error}
    return {
        "model": ModelInfo.MODEL,
        "version": ModelInfo.VERSION,
        "name": info.name,
        "server": ModelInfo.SERVER,
        "serverVersion": info.server_version,
        "architecture": info.architecture,
        "architectureConfig": info.architecture_config,
        "dimensions": info.dimensions,
        "checkpoint": {
            "name": info.checkpoint.name,
            "sizeBytes": info.checkpoint.size,
            "sha256": info.checkpoint.sha256,
            "weights": info.checkpoint.weights,
        },
        "modalities": list(info.encoders),
        "inputKinds": [kind.value for kind in info.input_kinds],
        "device": info.device,
        "dtype": info.dtype,
        "dtypeReason": info.dtype_reason,
        "preprocessing": info.preprocessing.value,
        "outputScaling": info.output_scaling.value,
        "logitScales": dict(info.logit_scales),
        "state": state,
    }


async def meta(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    return json_response(meta_json(engine.model_info(), engine.state.value, engine.load_error))


async def live(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def ready(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    if engine.ready:
        return web.Response(status=204)
    return error_response(503, f"not ready: {engine.state.value}" + (f" ({engine.load_error})"
                                                                       if engine.load_error else ""))


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[ENGINE_KEY].metrics.render(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
