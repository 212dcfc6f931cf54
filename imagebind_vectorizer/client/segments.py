"""A client of our server's `VectorizeSegments` RPC: a long file streamed up in chunks, its
segments read back as the server computes them. The ingester uses it so segment vectors come from
the very server (and model) that Weaviate's near* queries go through."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import grpc
import numpy as np

from imagebind_vectorizer.errors import ImageBindError, InputError, NotReadyError, OverloadedError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.moments import Segment, Window, WindowSpec
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2_grpc as pb_grpc

#: bytes per upload message: far below gRPC's message limits, large enough to keep the link busy
CHUNK_BYTES = 1024 * 1024
_MODALITY = {InputKind.AUDIO: pb.MODALITY_AUDIO, InputKind.VIDEO: pb.MODALITY_VIDEO}


class SegmentClient:
    """`api_key` goes out as `authorization: Bearer` metadata; `tls` (implied by `ca_file`) speaks TLS,
    verifying the server against `ca_file` or the system's CAs."""

    def __init__(self, address: str, timeout_s: float | None = None, *, api_key: str | None = None,
                 ca_file: str | os.PathLike[str] | None = None, tls: bool = False) -> None:
        self.address = address
        self.timeout_s = timeout_s
        options = [("grpc.max_receive_message_length", 64 << 20)]
        if tls or ca_file:
            roots = Path(ca_file).read_bytes() if ca_file else None
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(roots), options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._stub = pb_grpc.VectorizerStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def preprocessing(self) -> str:
        """The server's preprocessing profile (part of what a segment's vectors depend on)."""
        try:
            return self._stub.Meta(pb.MetaRequest(), timeout=30, metadata=self._metadata).preprocessing
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None

    def __enter__(self) -> SegmentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def segments(self, source: str | os.PathLike[str] | BinaryIO, kind: InputKind, spec: WindowSpec | None = None,
                 *, first_index: int = 0, item_id: str = "") -> Iterator[Segment]:
        """The file's segments in order (from `first_index`); `source` is a path or a seekable binary
        file (read from its start). Raises InputError (with the server's message, after the segments
        that did come) when the file is refused or breaks off, OverloadedError when the server runs
        its most segment streams, NotReadyError when the server cannot be reached or is not ready,
        ImageBindError for any other failure of the call."""
        with contextlib.ExitStack() as owned:
            handle = owned.enter_context(Path(source).open("rb")) if isinstance(source, str | os.PathLike) \
                else source
            size = handle.seek(0, os.SEEK_END)
            handle.seek(0)
            options = pb.SegmentOptions(modality=_MODALITY[kind], total_bytes=size, first_index=first_index,
                                        encoding=pb.VECTOR_ENCODING_FLOAT32_LE, id=item_id)
            if spec is not None:
                options.window_seconds, options.overlap_seconds = spec.seconds, spec.overlap
            yield from self._stream(handle, options)

    def _stream(self, handle: BinaryIO, options: pb.SegmentOptions) -> Iterator[Segment]:
        def upload() -> Iterator[pb.VectorizeSegmentsRequest]:
            first = True
            while True:
                chunk = handle.read(CHUNK_BYTES)
                if not chunk and not first:
                    return
                request = pb.VectorizeSegmentsRequest(chunk=chunk)
                if first:
                    request.options.CopyFrom(options)
                yield request
                first = False

        call = self._stub.VectorizeSegments(upload(), timeout=self.timeout_s, metadata=self._metadata)
        try:
            for response in call:
                if response.HasField("segment"):
                    yield _segment(response.segment)
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        finally:
            call.cancel()


def _segment(message: pb.Segment) -> Segment:
    segment = Segment(Window(message.index, message.start_seconds, message.end_seconds))
    for kind, field, error_field in ((InputKind.VIDEO, "visual", "visual_error"),
                                     (InputKind.AUDIO, "audio", "audio_error")):
        if message.HasField(field):
            segment.vectors[kind] = np.frombuffer(getattr(message, field).float32_le, dtype="<f4").copy()
        elif message.HasField(error_field):
            error = getattr(message, error_field)
            segment.errors[kind] = InputError(error.message, reason=error.reason)
    return segment


def _error(exc: grpc.RpcError, address: str) -> Exception:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InputError(details or "the server refused the file", reason="invalid")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return OverloadedError(details or "the server is busy")
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return ImageBindError(f"the vectorizer's gRPC service at {address} requires an API key: {details}")
    if code is grpc.StatusCode.UNAVAILABLE:
        return NotReadyError(f"the vectorizer's gRPC service at {address} is unavailable: {details}")
    return ImageBindError(f"segmenting failed at {address}: {code.name if code else ''} {details}")
