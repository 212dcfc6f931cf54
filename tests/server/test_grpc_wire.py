"""Counting a VectorizeRequest's items on the wire, before protobuf parses it (no server needed)."""

from __future__ import annotations

import pytest

from imagebind_vectorizer.server import grpc_wire
from imagebind_vectorizer.server.grpc_wire import TooManyItems, items_over, vectorize_request_parser
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb


def request(count: int, **fields: object) -> bytes:
    return pb.VectorizeRequest(items=[pb.Item(modality=pb.MODALITY_TEXT, text=f"t{i}", id=str(i))
                                      for i in range(count)], **fields).SerializeToString()


@pytest.mark.parametrize("count", [0, 1, 9, 10])
def test_a_request_within_the_limit_is_parsed_as_protobuf_parses_it(count: int) -> None:
    raw = request(count, encoding=pb.VECTOR_ENCODING_FLOAT32_LE)
    assert not items_over(raw, 10)
    assert vectorize_request_parser(10)(raw) == pb.VectorizeRequest.FromString(raw)


def test_past_the_limit_the_message_is_never_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parsing(raw: bytes) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(grpc_wire.pb.VectorizeRequest, "FromString", no_parsing)
    assert vectorize_request_parser(10)(request(11)) == TooManyItems(10)
    assert vectorize_request_parser(10)(request(1) * 3_000_000) == TooManyItems(10)


def test_junk_fields_count_against_the_limit_and_malformed_bytes_go_to_the_parser() -> None:
    junk = b"".join(b"\x18\x01" for _ in range(100))  # field 3, a varint, 100 times
    assert items_over(request(1) + junk, 10)
    for malformed in (b"\x0a\xff", b"\x0a", b"\x0f\x00", request(3)[:-2]):
        assert not items_over(malformed, 10)
        with pytest.raises(Exception):  # noqa: B017 - protobuf's own error, whatever its type
            vectorize_request_parser(10)(malformed)
