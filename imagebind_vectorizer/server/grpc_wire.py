"""gRPC request messages counted before they are parsed.

grpc.aio deserializes a unary request on the event loop, and protobuf (upb) holds the GIL while it
parses: a 24 MB `VectorizeRequest` of three million two-character texts takes about a second (and a
256 MB one ten), before any handler could look at the item count. So `Vectorize` gets a
deserializer that first walks the message's top-level fields on the wire (tag and length only,
stopping just past the limit) and parses only a message within `max_request_items`; past it, the
handler receives `TooManyItems` and answers INVALID_ARGUMENT without the message ever being parsed.

The Vectorizer service is registered from its descriptor (every method of the proto, with the
generated message classes), so a method added to the proto is served without a change here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb

#: top-level fields of a VectorizeRequest besides its items that a client may send (encoding, and
#: room for fields added later); more than that is junk and counts against the item limit
_OTHER_FIELDS = 16
_ITEMS_FIELD = pb.VectorizeRequest.DESCRIPTOR.fields_by_name["items"].number


@dataclass(frozen=True)
class TooManyItems:
    """Stands for a request message with more than `limit` items, which was not parsed."""

    limit: int


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[pos]  # IndexError past the end: a truncated message
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def items_over(raw: bytes, limit: int) -> bool:
    """Does the wire message hold more than `limit` items (or junk fields)? Reads at most
    limit + 16 field headers; a malformed message answers False and is left to the parser."""
    pos = items = fields = 0
    try:
        while pos < len(raw):
            tag, pos = _varint(raw, pos)
            wire_type = tag & 7
            if wire_type == 2:  # length-delimited: an item, or a string/bytes field
                length, pos = _varint(raw, pos)
                pos += length
            elif wire_type == 0:
                _, pos = _varint(raw, pos)
            elif wire_type in (1, 5):
                pos += 8 if wire_type == 1 else 4
            else:
                return False
            fields += 1
            items += (tag >> 3) == _ITEMS_FIELD
            if items > limit or fields > limit + _OTHER_FIELDS:
                return True
    except (IndexError, ValueError):
        return False
    return False


def vectorize_request_parser(limit: int) -> Callable[[bytes], pb.VectorizeRequest | TooManyItems]:
    def parse(raw: bytes) -> pb.VectorizeRequest | TooManyItems:
        return TooManyItems(limit) if items_over(raw, limit) else pb.VectorizeRequest.FromString(raw)

    return parse


_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_vectorizer_service(servicer: Any, server: grpc.aio.Server,
                           parsers: Mapping[str, Callable[[bytes], Any]]) -> None:
    """What the generated `add_VectorizerServicer_to_server` does, with `parsers` (method name ->
    request deserializer) in place of the generated `FromString` where given."""
    service = pb.DESCRIPTOR.services_by_name["Vectorizer"]
    handlers = {}
    for method in service.methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        factory = _HANDLER_FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(getattr(servicer, method.name),
                                        request_deserializer=parsers.get(method.name, request_class.FromString),
                                        response_serializer=response_class.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)
