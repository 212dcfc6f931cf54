"""Bad input on both transports: every case is refused with 400 / INVALID_ARGUMENT and a message
naming the field and item index, and the next valid request still succeeds."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.server.weaviate_http import FIELD_OF_KIND
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.server.support import (
    InProcessServer,
    LoopThread,
    go_request,
    grpc_stub,
    http_vectorize,
    item,
    start_server,
    vectorize_body,
)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming width x height RGB pixels, with one tiny IDAT: decoding it
    would need width*height*3 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + png_chunk(b"IEND", b""))


def corrupt_png() -> bytes:
    data = bytearray(media.image_bytes("PNG", 64, 64, seed=3))
    start = data.index(b"IDAT") + 4
    data[start:start + 64] = bytes(64)  # zeroed compressed data: CRC and zlib stream both broken
    return bytes(data)


def imu_with(value: str) -> bytes:
    rows = media.imu_samples(50).T.tolist()
    rows[7][2] = value  # type: ignore[call-overload]
    return (",".join(media.IMU_HEADER) + "\n" + "\n".join(",".join(str(v) for v in row) for row in rows)).encode()


def npy(array: np.ndarray) -> bytes:
    return media.imu_npy(array)


JPEG = media.image_bytes("JPEG", 96, 96, seed=2)
WAV = media.audio_bytes("wav", seconds=0.5)
MP4 = media.video_bytes(seconds=1.0, fps=5, width=64, height=48)

#: a valid first item per kind, so the bad one is always at index 1 of its field
VALID = {
    InputKind.IMAGE: media.image_bytes("PNG", 48, 48),
    InputKind.AUDIO: WAV,
    InputKind.VIDEO: MP4,
    InputKind.IMU: media.imu_csv(media.imu_samples(100)),
    InputKind.DEPTH: media.depth_png_8bit(48, 48),
    InputKind.THERMAL: media.thermal_jpeg(48, 48),
}

#: (case, kind, bad bytes): bad on both transports
BAD_ITEMS = [
    ("empty-image", InputKind.IMAGE, b""),
    ("empty-audio", InputKind.AUDIO, b""),
    ("empty-video", InputKind.VIDEO, b""),
    ("empty-imu", InputKind.IMU, b""),
    ("empty-depth", InputKind.DEPTH, b""),
    ("empty-thermal", InputKind.THERMAL, b""),
    ("truncated-jpeg", InputKind.IMAGE, JPEG[: len(JPEG) // 3]),
    ("corrupt-png", InputKind.IMAGE, corrupt_png()),
    ("truncated-wav", InputKind.AUDIO, WAV[:30]),
    ("wav-header-only", InputKind.AUDIO, WAV[:44]),
    ("truncated-mp4", InputKind.VIDEO, MP4[: len(MP4) // 2]),
    ("garbage-mp4", InputKind.VIDEO, MP4[:32] + bytes(range(256)) * 8),
    ("text-as-image", InputKind.IMAGE, b"a photo of a cat on a sofa"),
    ("text-as-audio", InputKind.AUDIO, b"the sound of rain"),
    ("png-bomb-30000x30000", InputKind.IMAGE, png_claiming(30000, 30000)),
    ("png-bomb-as-depth", InputKind.DEPTH, png_claiming(30000, 30000)),
    ("imu-nan", InputKind.IMU, imu_with("nan")),
    ("imu-inf", InputKind.IMU, imu_with("inf")),
    ("imu-five-columns", InputKind.IMU, b"1,2,3,4,5\n6,7,8,9,10\n"),
    ("imu-npy-wrong-shape", InputKind.IMU, npy(np.zeros((3, 50), dtype=np.float32))),
    ("imu-npy-nan", InputKind.IMU, npy(np.full((6, 50), np.nan, dtype=np.float32))),
    ("imu-not-numbers", InputKind.IMU, b"gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z\na,b,c,d,e,f\n"),
]


def check_still_serving_http(port: int) -> None:
    response = http_vectorize(port, vectorize_body(["still fine"], images=[VALID[InputKind.IMAGE]]))
    assert response.status == 200, response.body


def check_still_serving_grpc(stub) -> None:
    response = stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "still fine"),
                                                         item(InputKind.IMAGE, VALID[InputKind.IMAGE])]), timeout=30)
    assert len(response.embeddings) == 2


@pytest.fixture(scope="module")
def stub(server: InProcessServer) -> Iterator:
    channel, stub = grpc_stub(server.grpc_target)
    yield stub
    channel.close()


@pytest.mark.parametrize(("case", "kind", "bad"), BAD_ITEMS, ids=[c[0] for c in BAD_ITEMS])
def test_bad_item_over_http(server: InProcessServer, case: str, kind: InputKind, bad: bytes) -> None:
    field = FIELD_OF_KIND[kind]
    body = json.dumps({"texts": ["fine"], field: [base64.b64encode(VALID[kind]).decode(),
                                                 base64.b64encode(bad).decode()]}).encode()
    response = http_vectorize(server.http_port, body)
    assert response.status == 400, (case, response.body)
    assert f"{field}[1]" in response.json()["error"]
    check_still_serving_http(server.http_port)


@pytest.mark.parametrize(("case", "kind", "bad"), BAD_ITEMS, ids=[c[0] for c in BAD_ITEMS])
def test_bad_item_over_grpc(server: InProcessServer, stub, case: str, kind: InputKind, bad: bytes) -> None:
    request = pb.VectorizeRequest(items=[item(InputKind.TEXT, "fine"), item(kind, bad), item(kind, VALID[kind])])
    with pytest.raises(grpc.RpcError) as caught:
        stub.Vectorize(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, case
    assert f"items[1]: ({kind.value})" in caught.value.details()
    check_still_serving_grpc(stub)


def test_bad_item_in_a_stream_fails_alone(stub) -> None:
    requests = [pb.VectorizeStreamRequest(sequence=i, item=item(kind, bad))
                for i, (_, kind, bad) in enumerate(BAD_ITEMS)]
    requests.append(pb.VectorizeStreamRequest(sequence=len(BAD_ITEMS), item=item(InputKind.TEXT, "good")))
    answers = {a.sequence: a for a in stub.VectorizeStream(iter(requests), timeout=60)}
    assert len(answers) == len(requests)
    for sequence, (case, kind, _) in enumerate(BAD_ITEMS):
        error = answers[sequence].error
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], case
        assert error.message.startswith(f"({kind.value})"), (case, error.message)
    assert answers[len(BAD_ITEMS)].WhichOneof("result") == "embedding"


@pytest.mark.parametrize(("case", "body", "needle"), [
    ("invalid-base64", b'{"images": ["not base64!!"]}', "images[0]: invalid base64"),
    ("bad-padding", b'{"texts": ["ok"], "audio": ["' + base64.b64encode(WAV).rstrip(b"=")[:-1] + b'"]}',
     "audio[0]: invalid base64"),
    ("data-uri-not-base64", b'{"images": ["data:image/png,abc"]}', "images[0]"),
    ("empty-image-string", b'{"images": [""]}', "images[0]: empty"),
    ("empty-depth-string", b'{"depth": ["' + base64.b64encode(VALID[InputKind.DEPTH]) + b'", ""]}', "depth[1]"),
    ("unknown-field", b'{"texts": ["a"], "imgs": ["x"]}', "unknown field(s) ['imgs']"),
    ("IMU-field-capitalised", b'{"IMU": ["x"]}', "unknown field(s) ['IMU']"),
    ("texts-not-a-list", b'{"texts": "a lone string"}', "texts: must be a list"),
    ("images-not-a-list", b'{"images": {"a": 1}}', "images: must be a list"),
    ("text-not-a-string", b'{"texts": ["a", 5]}', "texts[1]: must be a string"),
    ("image-not-a-string", b'{"images": [null]}', "images[0]: must be a string"),
    ("nested-list", b'{"video": [["AAAA"]]}', "video[0]: must be a string"),
    ("body-is-a-list", b'["texts"]', "JSON object"),
    ("body-is-not-json", b"texts=a", "not valid JSON"),
    ("body-is-empty", b"", "empty request body"),
    ("truncated-json", b'{"texts": ["a"', "not valid JSON"),
    ("invalid-utf8", b'{"texts": ["\xff\xfe"]}', "not valid JSON"),
])
def test_malformed_json_over_http(server: InProcessServer, case: str, body: bytes, needle: str) -> None:
    response = http_vectorize(server.http_port, body)
    assert response.status == 400, (case, response.body)
    assert needle in response.json()["error"], (case, response.json())
    check_still_serving_http(server.http_port)


def test_disabled_modality_names_the_field(loop_thread: LoopThread, server_settings: Settings) -> None:
    running = start_server(loop_thread, server_settings.replace(modalities="text"))
    channel, stub = grpc_stub(running.grpc_target)
    try:
        response = http_vectorize(running.http_port, vectorize_body(["ok"], audio=[WAV]))
        assert response.status == 400 and "audio" in response.json()["error"] \
            and "not enabled" in response.json()["error"]
        with pytest.raises(grpc.RpcError) as caught:
            stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "ok"), item(InputKind.AUDIO, WAV)]),
                           timeout=30)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "items[1]: (audio)" in caught.value.details() and "not enabled" in caught.value.details()
        assert http_vectorize(running.http_port, vectorize_body(["ok"])).status == 200
    finally:
        channel.close()
        running.stop()


@pytest.fixture(scope="module")
def small_limit(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder):
    running = start_server(loop_thread, server_settings.replace(max_request_bytes=64 * 1024), shared_embedder)
    yield running
    running.stop()


def test_http_body_over_the_limit_is_413_with_json(small_limit: InProcessServer) -> None:
    body = vectorize_body(images=[bytes(100_000)])
    response = http_vectorize(small_limit.http_port, body)
    assert response.status == 413, response.body
    assert "65536" in response.json()["error"]
    check_still_serving_http(small_limit.http_port)


def test_grpc_message_over_the_limit_is_refused(small_limit: InProcessServer) -> None:
    channel, stub = grpc_stub(small_limit.grpc_target)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.IMAGE, bytes(100_000))]), timeout=10)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in caught.value.details()
        check_still_serving_grpc(stub)
    finally:
        channel.close()


def test_oversized_headers_and_garbage_bytes_do_not_crash(server: InProcessServer) -> None:
    import socket

    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200),  # a TLS hello
                 b"POST /vectorize HTTP/1.1\r\nContent-Length: 10\r\n\r\n{",  # body cut short
                 b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
    assert go_request(server.http_port, "GET", "/.well-known/live").status == 204
    check_still_serving_http(server.http_port)
