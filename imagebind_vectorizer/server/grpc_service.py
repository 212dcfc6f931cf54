"""The gRPC transport (proto/imagebind/vectorizer/v1/vectorizer.proto), the standard health service
and server reflection, over the same engine as the HTTP transport. A thin layer: parse the items,
call the engine, encode the vectors; the engine's exceptions become status codes here.

Deadlines: the call's remaining time becomes the engine's monotonic deadline, so items whose
deadline has passed are dropped before preprocessing or before their batch runs, never computed.
When the deadline passes mid-call gRPC cancels the handler, which cancels the engine's futures;
a cancelled item leaves the engine's queue at once.

Client streams (VectorizeStream, a VectorizeSegments upload) that go quiet are ended after
`stream_idle_timeout_s` with DEADLINE_EXCEEDED (a time limit ran out; CANCELLED would read as the
client's own doing), so a stream that stops sending gives back its window or segment slot even
without a deadline of its own; grpc core has no per-stream read timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import NoReturn, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.engine.scheduler import PRIORITY_KEY, Priority
from imagebind_vectorizer.engine.segments import Segmenter, Spool
from imagebind_vectorizer.errors import (
    DeadlineExceededError,
    ImageBindError,
    InputError,
    NotReadyError,
    OverloadedError,
)
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.moments import Segment, WindowSpec
from imagebind_vectorizer.runtime.info import ModelInfo
from imagebind_vectorizer.server.auth import GrpcAuthInterceptor
from imagebind_vectorizer.server.connections import connection_limit
from imagebind_vectorizer.server.grpc_wire import TooManyItems, add_vectorizer_service, vectorize_request_parser
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2_grpc as pb_grpc
from imagebind_vectorizer.server.security import Security
from imagebind_vectorizer.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["Vectorizer"].full_name
#: items a stream may have read but not yet answered; HTTP/2 flow control holds the client beyond
STREAM_MAX_IN_FLIGHT = 64
#: how often a health Watch looks at the engine's state
HEALTH_WATCH_INTERVAL_S = 0.1
_INT32_MAX = 2**31 - 1

MODALITY_OF_KIND: dict[InputKind, int] = {kind: pb.Modality.Value(kind.facts.grpc_modality) for kind in InputKind}
KIND_OF_MODALITY: dict[int, InputKind] = {modality: kind for kind, modality in MODALITY_OF_KIND.items()}
M = TypeVar("M")


class IdleClock:
    """The idle clock of one client stream. It runs while the server waits for the client's next
    message and owes the client nothing (every item read is answered); past `timeout_s` the wait
    raises DeadlineExceededError. Time the client spends waiting for its own answers does not
    count: a client may send one item and wait for its vector before sending the next."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.owed = 0
        self._waiting: asyncio.Timeout | None = None

    async def next(self, messages: AsyncIterator[M]) -> M | None:
        """The next message, None at the end of the stream."""
        try:
            async with asyncio.timeout(None) as self._waiting:
                self._arm()
                return await anext(messages, None)
        except TimeoutError:
            raise DeadlineExceededError(
                f"the stream sent no message for {self.timeout_s:g} s with no answer pending "
                "(stream_idle_timeout_s); send the next message sooner, or end the stream") from None
        finally:
            self._waiting = None

    def owe(self) -> None:
        self.owed += 1
        self._arm()

    def paid(self) -> None:
        self.owed -= 1
        self._arm()

    def _arm(self) -> None:
        if self._waiting is not None:  # from the moment the last answer went out
            self._waiting.reschedule(None if self.owed else asyncio.get_running_loop().time() + self.timeout_s)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and reason tag for an engine exception."""
    if isinstance(exc, InputError):
        return grpc.StatusCode.INVALID_ARGUMENT, exc.reason
    if isinstance(exc, OverloadedError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded"
    if isinstance(exc, NotReadyError):
        return grpc.StatusCode.UNAVAILABLE, "not_ready"
    if isinstance(exc, DeadlineExceededError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "deadline"
    return grpc.StatusCode.INTERNAL, "internal"


def parse_item(item: pb.Item, index: int) -> tuple[InputKind, bytes | str]:
    """One proto item -> (kind, content); raises InputError naming `items[index]`."""
    kind = KIND_OF_MODALITY.get(item.modality)
    if kind is None:
        raise InputError(f"modality must be one of {', '.join(pb.Modality.keys()[1:])}, got {item.modality}",
                         reason="modality", field="items", index=index)
    content = item.WhichOneof("content")
    if content is None:
        raise InputError(f"{kind.value} item has neither `text` nor `data`", reason="empty", field="items",
                         index=index)
    if content == "text" and kind is not InputKind.TEXT:
        raise InputError(f"{kind.value} items carry the file's bytes in `data`, not `text`", reason="invalid",
                         field="items", index=index)
    return kind, item.text if content == "text" else item.data


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _priority(context: grpc.aio.ServicerContext) -> Priority:
    """The `x-imagebind-priority` metadata value (query or bulk); none: by cost alone."""
    for key, value in context.invocation_metadata() or ():
        if key == PRIORITY_KEY:
            return Priority.parse(value if isinstance(value, str) else value.decode(errors="replace"))
    return Priority.DEFAULT


def _embedding(vector: np.ndarray, kind: InputKind, item_id: str, encoding: int) -> pb.Embedding:
    if encoding == pb.VECTOR_ENCODING_FLOAT32_LE:
        return pb.Embedding(id=item_id, modality=MODALITY_OF_KIND[kind],
                            float32_le=np.asarray(vector, dtype="<f4").tobytes())
    return pb.Embedding(id=item_id, modality=MODALITY_OF_KIND[kind], values=vector.tolist())


class VectorizerService(pb_grpc.VectorizerServicer):
    def __init__(self, engine: Engine, settings: Settings, segmenter: Segmenter | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.segmenter = segmenter or Segmenter(engine, settings)

    def _observe(self, method: str, code: grpc.StatusCode, started: float | None = None) -> None:
        endpoint = f"/{SERVICE_NAME}/{method}"
        self.engine.metrics.requests.labels("grpc", endpoint, code.name).inc()
        if started is not None:
            self.engine.metrics.request_seconds.labels("grpc", endpoint).observe(time.monotonic() - started)

    async def _fail(self, context: grpc.aio.ServicerContext, method: str, exc: BaseException,
                    started: float | None = None) -> NoReturn:
        code, reason = status_of(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.error("%s failed", method, exc_info=exc)
        elif code is grpc.StatusCode.INVALID_ARGUMENT:
            log.info("bad input", extra={"fields": {"status": code.name, "reason": reason, "error": str(exc)}})
        self._observe(method, code, started)
        message = str(exc) if isinstance(exc, ImageBindError) else f"server error: {type(exc).__name__}: {exc}"
        await context.abort(code, message)
        raise AssertionError("context.abort returned")  # it raises; this satisfies the type checker

    # Vectorize ------------------------------------------------------------------------------------
    async def Vectorize(self, request: pb.VectorizeRequest, context: grpc.aio.ServicerContext) -> pb.VectorizeResponse:
        started = time.monotonic()
        try:
            response = await self._vectorize(request, context)
        except asyncio.CancelledError:
            self._observe("Vectorize", grpc.StatusCode.CANCELLED)
            raise
        except Exception as exc:
            await self._fail(context, "Vectorize", exc, started)
        self._observe("Vectorize", grpc.StatusCode.OK, started)
        return response

    async def _vectorize(self, request: pb.VectorizeRequest | TooManyItems,
                         context: grpc.aio.ServicerContext) -> pb.VectorizeResponse:
        if isinstance(request, TooManyItems):  # counted on the wire, never parsed
            raise InputError(f"the request holds more than {request.limit} items, the limit (max_request_items); "
                             "split it into smaller requests or use VectorizeStream", reason="too_many", field="items")
        grouped: dict[InputKind, list[bytes | str]] = {}
        positions: dict[InputKind, list[int]] = {}
        for index, item in enumerate(request.items):
            kind, content = parse_item(item, index)
            grouped.setdefault(kind, []).append(content)
            positions.setdefault(kind, []).append(index)
        try:
            vectors = await self.engine.embed_request(grouped, deadline=_deadline(context),
                                                      priority=_priority(context))
        except InputError as exc:
            raise _locate(exc, positions) from None
        embeddings: list[pb.Embedding | None] = [None] * len(request.items)
        for kind, kind_vectors in vectors.items():
            for index, vector in zip(positions[kind], kind_vectors, strict=True):
                embeddings[index] = _embedding(vector, kind, request.items[index].id, request.encoding)
        info = self.engine.model_info()
        return pb.VectorizeResponse(embeddings=embeddings, dimensions=info.dimensions if info else 0)

    # VectorizeStream ------------------------------------------------------------------------------
    async def VectorizeStream(self, request_iterator: AsyncIterator[pb.VectorizeStreamRequest],
                              context: grpc.aio.ServicerContext) -> AsyncIterator[pb.VectorizeStreamResponse]:
        method = "VectorizeStream"
        if not self.engine.ready:  # refuse the whole stream; once admitted, items fail one by one
            await self._fail(context, method, NotReadyError(f"the server is {self.engine.state.value}"))
        deadline = _deadline(context)
        try:
            priority = _priority(context)
        except InputError as exc:
            await self._fail(context, method, exc)
        window = asyncio.Semaphore(STREAM_MAX_IN_FLIGHT)
        idle = IdleClock(self.settings.stream_idle_timeout_s)
        results: asyncio.Queue[pb.VectorizeStreamResponse | None] = asyncio.Queue()
        items: set[asyncio.Task[None]] = set()

        async def answer(request: pb.VectorizeStreamRequest) -> None:
            response = pb.VectorizeStreamResponse(sequence=request.sequence, id=request.item.id)
            try:
                kind, content = parse_item(request.item, request.sequence)
                vector = (await self.engine.embed(kind, [content], deadline=deadline, priority=priority))[0]
                response.embedding.CopyFrom(_embedding(vector, kind, request.item.id, request.encoding))
            except Exception as exc:
                code, reason = status_of(exc)
                if code is grpc.StatusCode.INTERNAL:
                    log.error("stream item failed", exc_info=exc)
                response.error.CopyFrom(pb.ItemError(code=code.value[0], reason=reason, message=_item_message(
                    exc, request)))
            await results.put(response)

        async def read() -> None:
            messages = aiter(request_iterator)
            try:
                while (request := await idle.next(messages)) is not None:
                    await window.acquire()  # released once the answer is written
                    idle.owe()
                    task = asyncio.ensure_future(answer(request))
                    items.add(task)
                    task.add_done_callback(items.discard)
                while items:
                    await asyncio.wait(set(items))
            finally:
                await results.put(None)

        reader = asyncio.ensure_future(read())
        code = grpc.StatusCode.OK
        try:
            while (response := await results.get()) is not None:
                yield response
                window.release()
                idle.paid()
            await reader  # re-raises a failed read
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except DeadlineExceededError as exc:  # the stream went quiet
            code = grpc.StatusCode.DEADLINE_EXCEEDED
            await context.abort(code, str(exc))
        except Exception as exc:
            code = grpc.StatusCode.INTERNAL
            log.error("stream failed", exc_info=exc)
            raise
        finally:
            reader.cancel()
            for task in list(items):
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(reader, *items, return_exceptions=True)
            self._observe(method, code)

    # VectorizeSegments ----------------------------------------------------------------------------
    async def VectorizeSegments(self, request_iterator: AsyncIterator[pb.VectorizeSegmentsRequest],
                                context: grpc.aio.ServicerContext) -> AsyncIterator[pb.VectorizeSegmentsResponse]:
        method = "VectorizeSegments"
        started = time.monotonic()
        try:
            if not self.engine.ready:
                raise NotReadyError(f"the server is {self.engine.state.value}")
            idle = IdleClock(self.settings.stream_idle_timeout_s)
            with self.segmenter.admitted():
                messages = aiter(request_iterator)
                first = await idle.next(messages)
                if first is None or not first.HasField("options"):
                    raise InputError("the first message must carry SegmentOptions", reason="invalid",
                                     field="options")
                options = first.options
                kind, spec = self._segment_options(options)
                with self.segmenter.spool(self._spool_limit(options.total_bytes)) as spool:
                    received = await self._spool(first, messages, spool, options.total_bytes, idle)
                    async for message in self._segment_responses(spool, kind, spec, options, received, context):
                        yield message
        except (asyncio.CancelledError, GeneratorExit):
            self._observe(method, grpc.StatusCode.CANCELLED)
            raise
        except Exception as exc:
            await self._fail(context, method, exc, started)
        self._observe(method, grpc.StatusCode.OK, started)

    async def _segment_responses(self, spool: Spool, kind: InputKind, spec: WindowSpec, options: pb.SegmentOptions,
                                 received: int, context: grpc.aio.ServicerContext
                                 ) -> AsyncIterator[pb.VectorizeSegmentsResponse]:
        short = options.total_bytes and received < options.total_bytes
        stop_note = (f"; the stream stopped after {received} of the {options.total_bytes} bytes announced"
                     if short else "")
        if received == 0:
            raise InputError("the stream carried no bytes", reason="empty", field="chunk")
        count, end = 0, 0.0
        try:
            async for segment in self.segmenter.segments(spool, kind, spec, deadline=_deadline(context),
                                                         first_index=options.first_index):
                count, end = count + 1, segment.end
                yield pb.VectorizeSegmentsResponse(segment=_segment_message(segment, options))
        except InputError as exc:
            raise InputError(f"({kind.value}) {exc.message}{stop_note}", reason=exc.reason) from None
        if short:
            raise InputError(f"({kind.value}) the file is truncated{stop_note}; the segments sent are what "
                             "those bytes hold", reason="truncated")
        yield pb.VectorizeSegmentsResponse(done=pb.SegmentsDone(segments=count, seconds=end, bytes=received))

    def _segment_options(self, options: pb.SegmentOptions) -> tuple[InputKind, WindowSpec]:
        kind = KIND_OF_MODALITY.get(options.modality)
        if kind not in (InputKind.AUDIO, InputKind.VIDEO):
            raise InputError("modality must be MODALITY_AUDIO or MODALITY_VIDEO", reason="modality", field="options")
        if options.total_bytes > self.settings.max_segment_source_bytes:
            raise InputError(f"the file is {options.total_bytes} bytes, over the limit of "
                             f"{self.settings.max_segment_source_bytes}", reason="too_large", field="options")
        if not options.window_seconds:
            return kind, self.segmenter.default_spec
        try:
            return kind, WindowSpec(options.window_seconds, options.overlap_seconds)
        except ValueError as exc:
            raise InputError(str(exc), reason="invalid", field="options") from None

    def _spool_limit(self, announced: int) -> int:
        """The most bytes the upload may carry (and the spool room reserved for it): what it announced,
        else the limit for any file."""
        return min(self.settings.max_segment_source_bytes, announced or self.settings.max_segment_source_bytes)

    async def _spool(self, first: pb.VectorizeSegmentsRequest, rest: AsyncIterator[pb.VectorizeSegmentsRequest],
                     spool: Spool, announced: int, idle: IdleClock) -> int:
        """Write the uploaded chunks to the spool file; the byte limit holds as they arrive."""
        limit = self._spool_limit(announced)
        received = 0

        async def write(chunk: bytes) -> None:
            nonlocal received
            received += len(chunk)
            if received > limit:
                what = "announced" if announced and announced < self.settings.max_segment_source_bytes else \
                    "the limit of"
                raise InputError(f"the stream carries more than {what} {limit} bytes", reason="too_large",
                                 field="chunk")
            if chunk:
                await asyncio.to_thread(spool.write, chunk)

        await write(first.chunk)
        while (request := await idle.next(rest)) is not None:
            if request.HasField("options"):
                raise InputError("SegmentOptions may only come in the first message", reason="invalid",
                                 field="options")
            await write(request.chunk)
        await asyncio.to_thread(spool.finish)
        return received

    # Meta -----------------------------------------------------------------------------------------
    async def Meta(self, request: pb.MetaRequest, context: grpc.aio.ServicerContext) -> pb.MetaResponse:
        self._observe("Meta", grpc.StatusCode.OK)
        engine = self.engine
        return meta_response(engine.model_info(), engine.state.value, engine.load_error, self.settings)


def _locate(exc: InputError, positions: dict[InputKind, list[int]]) -> InputError:
    """The engine names an item by its kind and its index among that kind's items; the caller
    knows it by its index in the request."""
    kind = exc.kind
    if kind is None or kind not in positions:
        return exc
    index = positions[kind][exc.index if exc.index is not None else 0]
    return InputError(f"({kind.value}) {exc.message}", reason=exc.reason, kind=kind, field="items", index=index)


def _item_message(exc: BaseException, request: pb.VectorizeStreamRequest) -> str:
    if isinstance(exc, InputError) and exc.field != "items":
        kind = KIND_OF_MODALITY.get(request.item.modality)
        return f"({kind.value if kind else 'unknown'}) {exc.message}"
    if isinstance(exc, ImageBindError):
        return str(exc)
    return f"server error: {type(exc).__name__}: {exc}"


def _segment_message(segment: Segment, options: pb.SegmentOptions) -> pb.Segment:
    message = pb.Segment(id=options.id, index=segment.index, start_seconds=segment.start,
                         end_seconds=segment.end)
    for kind, target, error_target in ((InputKind.VIDEO, message.visual, message.visual_error),
                                       (InputKind.AUDIO, message.audio, message.audio_error)):
        if kind in segment.vectors:
            target.CopyFrom(_embedding(segment.vectors[kind], kind, options.id, options.encoding))
        elif kind in segment.errors:
            error = segment.errors[kind]
            error_target.CopyFrom(pb.ItemError(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], reason=error.reason,
                                               message=f"segment {segment.index} ({segment.start:.2f}-"
                                                       f"{segment.end:.2f} s): {error.message}"))
    return message


def meta_response(info: ModelInfo | None, state: str, error: str | None, settings: Settings) -> pb.MetaResponse:
    limits = dict(max_message_bytes=_max_message_bytes(settings), stream_max_in_flight=STREAM_MAX_IN_FLIGHT,
                  segment_seconds=settings.segment_seconds, segment_overlap_seconds=settings.segment_overlap_seconds,
                  max_segment_source_bytes=settings.max_segment_source_bytes,
                  max_segment_source_seconds=settings.max_segment_source_seconds,
                  max_segment_streams=settings.max_segment_streams)
    if info is None:
        return pb.MetaResponse(model=ModelInfo.MODEL, server=ModelInfo.SERVER, state=state, error=error or "",
                               **limits)
    checkpoint = info.checkpoint
    return pb.MetaResponse(
        model=ModelInfo.MODEL, name=info.name, server=ModelInfo.SERVER, server_version=info.server_version,
        state=state, architecture=info.architecture,
        architecture_config_json=json.dumps(dict(info.architecture_config)), dimensions=info.dimensions,
        checkpoint=pb.Checkpoint(name=checkpoint.name or "", size_bytes=checkpoint.size or 0,
                                 sha256=checkpoint.sha256 or "", weights=checkpoint.weights),
        encoders=list(info.encoders), modalities=[MODALITY_OF_KIND[kind] for kind in info.input_kinds],
        device=info.device, dtype=info.dtype, dtype_reason=info.dtype_reason, preprocessing=info.preprocessing.value,
        output_scaling=info.output_scaling.value, **limits,
    )


def _max_message_bytes(settings: Settings) -> int:
    return min(settings.max_request_bytes, _INT32_MAX)


# Health ---------------------------------------------------------------------------------------------
class EngineHealth(health_pb2_grpc.HealthServicer):
    """grpc.health.v1.Health answered from the engine's state: SERVING only while it is ready
    (NOT_SERVING while loading, draining, stopped or failed), for "" and the Vectorizer."""

    def __init__(self, engine: Engine, services: Sequence[str]) -> None:
        self.engine = engine
        self.services = frozenset(services)

    def status(self, service: str) -> int:
        if service not in self.services:
            return health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        return health_pb2.HealthCheckResponse.SERVING if self.engine.ready \
            else health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> health_pb2.HealthCheckResponse:
        status = self.status(request.service)
        if status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last = None
        while True:
            status = self.status(request.service)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(HEALTH_WATCH_INTERVAL_S)


# Server ---------------------------------------------------------------------------------------------
async def start_grpc_server(engine: Engine, settings: Settings,
                            segmenter: Segmenter | None = None,
                            security: Security | None = None) -> tuple[grpc.aio.Server, int]:
    """Serve the Vectorizer, health and (unless `security` turns it off) reflection on
    settings.host:settings.grpc_port (0: any free port), with `security`'s keys and TLS. Returns the
    started server and the port it is bound to."""
    security = security or Security.open()
    limit = _max_message_bytes(settings)
    interceptors = []
    if security.grpc_keys.enabled:
        def rejected(method: str, reason: str) -> None:
            engine.metrics.requests.labels("grpc", method, grpc.StatusCode.UNAUTHENTICATED.name).inc()

        interceptors.append(GrpcAuthInterceptor(security.grpc_keys, open_prefixes=security.grpc_open_prefixes,
                                                on_reject=rejected))
    server = grpc.aio.server(interceptors=interceptors, options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
        # The same connection bounds as HTTP: grpc core refuses connections past the limit, closes
        # one that has not finished its HTTP/2 preface within the header timeout, and sends GOAWAY
        # to one without calls for the idle timeout (clients reconnect on their next call).
        ("grpc.max_allowed_incoming_connections", connection_limit(settings.max_connections, 2, "gRPC")),
        ("grpc.server_handshake_timeout_ms", int(settings.header_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", int(settings.idle_timeout_s * 1000)),
    ])
    add_vectorizer_service(VectorizerService(engine, settings, segmenter), server,
                           {"Vectorize": vectorize_request_parser(settings.max_request_items)})
    health_pb2_grpc.add_HealthServicer_to_server(EngineHealth(engine, ["", SERVICE_NAME]), server)
    if security.grpc_reflection:
        reflection.enable_server_reflection(
            [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            server)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.grpc_port}"
    try:
        port = server.add_secure_port(address, security.tls.grpc_credentials()) if security.tls is not None \
            else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen for gRPC on {address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    await server.start()
    return server, port
