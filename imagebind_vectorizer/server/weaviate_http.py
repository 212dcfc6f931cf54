"""Weaviate's multi2vec-bind contract over HTTP: POST /vectorize, GET /meta, /.well-known/{live,ready},
plus GET /metrics. A thin layer: decode JSON and base64, call the engine, encode the answer.

Facts that shape it (see the README): Weaviate sends no Content-Type header, omits empty lists,
sends one object per request with many requests in flight, reads an error only from a JSON body
`{"error": ...}` and counts exactly 200 as success, and calls /meta on each of its own readiness
checks."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.errors import (
    DeadlineExceededError,
    ImageBindError,
    InputError,
    NotReadyError,
    OverloadedError,
)
from imagebind_vectorizer.kinds import WEAVIATE_KIND_ORDER, InputKind
from imagebind_vectorizer.runtime.info import ModelInfo

log = logging.getLogger(__name__)

#: request field -> input kind, in the order Weaviate's Go client declares them
REQUEST_FIELDS: dict[str, InputKind] = {kind.facts.request_key: kind for kind in WEAVIATE_KIND_ORDER}
RESPONSE_FIELDS: dict[InputKind, str] = {kind: kind.facts.response_key for kind in WEAVIATE_KIND_ORDER}
FIELD_OF_KIND: dict[InputKind, str] = {kind: kind.facts.request_key for kind in WEAVIATE_KIND_ORDER}
ENGINE_KEY = web.AppKey("engine", Engine)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status=status,
                        content_type="application/json", headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": message}, status=status, headers=headers)


def decode_base64(value: str, field: str, index: int) -> bytes:
    """Standard base64 (what Weaviate stores for blobs); a `data:...;base64,` prefix is tolerated."""
    if value.startswith("data:"):
        comma = value.find(",")
        if comma < 0 or ";base64" not in value[:comma]:
            raise InputError("a data: URI must be base64-encoded", reason="base64", field=field, index=index)
        value = value[comma + 1:]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"invalid base64: {exc}", reason="base64", field=field, index=index) from None


def parse_vectorize_body(body: bytes) -> dict[InputKind, list[bytes | str]]:
    if not body:
        raise InputError("empty request body; expected a JSON object", reason="json")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"request body is not valid JSON: {exc}", reason="json") from None
    if not isinstance(payload, dict):
        raise InputError("request body must be a JSON object", reason="json")
    unknown = sorted(set(payload) - set(REQUEST_FIELDS))
    if unknown:
        raise InputError(f"unknown field(s) {unknown}; expected any of {list(REQUEST_FIELDS)}", reason="json")
    request: dict[InputKind, list[bytes | str]] = {}
    for field, kind in REQUEST_FIELDS.items():
        values = payload.get(field)
        if values is None:
            continue
        if not isinstance(values, list):
            raise InputError("must be a list of strings", reason="json", field=field)
        items: list[bytes | str] = []
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise InputError("must be a string", reason="json", field=field, index=index)
            if kind is InputKind.TEXT:
                items.append(value)
                continue
            if not value:
                raise InputError("empty string", reason="empty", field=field, index=index)
            items.append(decode_base64(value, field, index))
        request[kind] = items
    return request


def create_app(engine: Engine) -> web.Application:
    app = web.Application(client_max_size=engine.settings.max_request_bytes, middlewares=[_observe])
    app[ENGINE_KEY] = engine
    app[INFLIGHT_KEY] = InflightBytes(engine.settings.max_inflight_bytes)
    app.router.add_post("/vectorize", vectorize)
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


class InflightBytes:
    """Bytes of request bodies being held; bounds memory before the engine's queue can (a body is
    read, decoded and preprocessed before its items are admitted)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0

    def try_take(self, size: int) -> bool:
        if self.held and self.held + size > self.limit:  # one request alone is always let in
            return False
        self.held += size
        return True


INFLIGHT_KEY = web.AppKey("inflight", InflightBytes)


async def vectorize(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    inflight = request.app[INFLIGHT_KEY]
    size = request.content_length if request.content_length is not None else engine.settings.max_request_bytes
    if not inflight.try_take(size):
        engine.metrics.errors.labels("request", "overloaded").inc()
        return error_response(429, "too many request bytes in flight; retry later", headers={"Retry-After": "1"})
    try:
        return await _vectorize(request, engine)
    finally:
        inflight.held -= size


async def _vectorize(request: web.Request, engine: Engine) -> web.Response:
    # Read the raw body whatever the Content-Type: Weaviate sends none. Outside the try below: a body
    # over the limit raises HTTPRequestEntityTooLarge, which `_observe` answers as a JSON 413.
    body = await request.read()
    try:
        parsed = parse_vectorize_body(body)
        vectors = await engine.embed_request(parsed)
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
    body = {RESPONSE_FIELDS[kind]: vectors.get(kind, []) for kind in RESPONSE_FIELDS}
    return json_response(body)


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
            "path": info.checkpoint.path,
            "sizeBytes": info.checkpoint.size,
            "sha256": info.checkpoint.sha256,
            "weights": info.checkpoint.weights,
        },
        "modalities": list(info.encoders),
        "inputKinds": [kind.value for kind in info.input_kinds],
        "device": info.device,
        "dtype": info.dtype,
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
