"""The gRPC API over a real server on 127.0.0.1: every RPC, ids and order, both vector encodings,
streaming with per-item errors and flow control, status codes, deadlines, health and reflection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.grpc_service import SERVICE_NAME, STREAM_MAX_IN_FLIGHT
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.conftest import TINY_DIM
from tests.server.support import (
    GatedEngineFactory,
    InProcessServer,
    LoopThread,
    embedding_vector,
    grpc_stub,
    item,
    wait_until,
)

ATOL = 1e-5


class GatedModelEngine(Engine):
    """An engine whose model calls wait for `gate`: work queues up behind a blocked model call."""

    gate = threading.Event()
    entered = threading.Event()

    def _start_forward(self, kind, rows):  # type: ignore[no-untyped-def]
        type(self).entered.set()
        assert type(self).gate.wait(60), "the test never opened the gate"
        return super()._start_forward(kind, rows)


@pytest.fixture(scope="module")
def stub(server: InProcessServer) -> Iterator:
    channel, stub = grpc_stub(server.grpc_target)
    yield stub
    channel.close()


def mixed_items() -> list[tuple[InputKind, bytes | str]]:
    return [
        (InputKind.TEXT, "a dog on a beach"),
        (InputKind.IMAGE, media.image_bytes("JPEG", 96, 80, seed=1)),
        (InputKind.AUDIO, media.audio_bytes("wav", seconds=1.5, seed=2)),
        (InputKind.TEXT, "the sound of rain"),
        (InputKind.IMU, media.imu_csv(media.imu_samples(300, seed=3))),
        (InputKind.DEPTH, media.depth_png_16bit_mm(64, 48)),
        (InputKind.THERMAL, media.thermal_jpeg(64, 48)),
        (InputKind.VIDEO, media.video_bytes(seconds=1.0, fps=6, width=64, height=48, seed=4)),
        (InputKind.IMAGE, media.image_bytes("PNG", 64, 64, seed=5)),
    ]


def expected_vectors(reference: Embedder, items: list[tuple[InputKind, bytes | str]]) -> list[np.ndarray]:
    """Reference vectors per item, computed kind by kind with `Embedder.embed`."""
    out: list[np.ndarray | None] = [None] * len(items)
    for kind in {kind for kind, _ in items}:
        positions = [i for i, (k, _) in enumerate(items) if k is kind]
        vectors = reference.embed(kind, [items[i][1] for i in positions])
        for position, vector in zip(positions, vectors, strict=True):
            out[position] = vector
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("encoding", [pb.VECTOR_ENCODING_UNSPECIFIED, pb.VECTOR_ENCODING_FLOATS,
                                      pb.VECTOR_ENCODING_FLOAT32_LE])
def test_vectorize_mixed_modalities_in_request_order(stub, reference: Embedder, encoding: int) -> None:
    items = mixed_items()
    request = pb.VectorizeRequest(items=[item(k, c, item_id=f"id-{i}") for i, (k, c) in enumerate(items)],
                                  encoding=encoding)
    response = stub.Vectorize(request, timeout=60)
    assert response.dimensions == TINY_DIM
    assert [e.id for e in response.embeddings] == [f"id-{i}" for i in range(len(items))]
    assert [e.modality for e in response.embeddings] == [i.modality for i in request.items]
    for embedding, want in zip(response.embeddings, expected_vectors(reference, items), strict=True):
        if encoding == pb.VECTOR_ENCODING_FLOAT32_LE:
            assert not embedding.values and len(embedding.float32_le) == TINY_DIM * 4
        else:
            assert not embedding.float32_le and len(embedding.values) == TINY_DIM
        np.testing.assert_allclose(embedding_vector(embedding), want, atol=ATOL)


def test_vectorize_text_as_utf8_data_and_empty_request(stub, reference: Embedder) -> None:
    response = stub.Vectorize(pb.VectorizeRequest(items=[
        pb.Item(modality=pb.MODALITY_TEXT, data="ünïcode text".encode())]), timeout=30)
    np.testing.assert_allclose(embedding_vector(response.embeddings[0]), reference.embed("text", ["ünïcode text"])[0],
                               atol=ATOL)
    empty = stub.Vectorize(pb.VectorizeRequest(), timeout=30)
    assert list(empty.embeddings) == [] and empty.dimensions == TINY_DIM


@pytest.mark.parametrize(("bad", "needle"), [
    (pb.Item(modality=pb.MODALITY_UNSPECIFIED, text="no modality"), "modality must be one of"),
    (pb.Item(modality=42, data=b"x"), "modality must be one of"),  # type: ignore[arg-type]
    (pb.Item(modality=pb.MODALITY_IMAGE), "neither `text` nor `data`"),
    (pb.Item(modality=pb.MODALITY_IMAGE, text="a photo of a cat"), "not `text`"),
    (pb.Item(modality=pb.MODALITY_AUDIO, data=b"RIFF\x00\x00"), "(audio)"),
])
def test_vectorize_bad_item_is_invalid_argument_naming_its_index(stub, bad: pb.Item, needle: str) -> None:
    request = pb.VectorizeRequest(items=[item(InputKind.TEXT, "fine"), item(InputKind.TEXT, "also fine"), bad])
    with pytest.raises(grpc.RpcError) as caught:
        stub.Vectorize(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "items[2]" in caught.value.details() and needle in caught.value.details()
    assert len(stub.Vectorize(pb.VectorizeRequest(items=request.items[:2]), timeout=30).embeddings) == 2


def test_meta(stub, server: InProcessServer) -> None:
    meta = stub.Meta(pb.MetaRequest(), timeout=10)
    assert meta.model == "ImageBindModel" and meta.state == "ready"
    assert meta.architecture == "tiny" and meta.dimensions == TINY_DIM
    assert meta.checkpoint.name == Path(server.settings.checkpoint).name and meta.checkpoint.weights == "checkpoint"
    assert meta.checkpoint.path == "", "the server's folders stay private"
    assert meta.checkpoint.size_bytes > 0
    assert list(meta.encoders) == ["vision", "text", "audio", "depth", "thermal", "imu"]
    assert set(meta.modalities) == set(pb.Modality.values()) - {pb.MODALITY_UNSPECIFIED}
    assert meta.device == "cpu" and meta.dtype == "float32"
    assert meta.preprocessing == "official" and meta.output_scaling == "unit"
    assert meta.max_message_bytes == server.settings.max_request_bytes
    assert meta.stream_max_in_flight == STREAM_MAX_IN_FLIGHT
    assert '"out_embed_dim": 32' in meta.architecture_config_json
    # the checkpoint digest is computed in the background; once known, Meta reports it
    wait_until(lambda: len(stub.Meta(pb.MetaRequest(), timeout=10).checkpoint.sha256) == 64)


def test_stream_answers_every_item_with_its_sequence_and_id(stub, reference: Embedder) -> None:
    good = mixed_items()
    bad = {3: pb.Item(modality=pb.MODALITY_IMAGE, data=b"\x89PNG\r\n\x1a\n broken"),
           7: pb.Item(modality=pb.MODALITY_UNSPECIFIED, text="?"),
           8: pb.Item(modality=pb.MODALITY_IMU, data=b"gyro_x,gyro_y\n1,2\n")}
    requests = []
    kinds: dict[int, InputKind] = {}
    for sequence in range(len(good) + len(bad)):
        if sequence in bad:
            requests.append(pb.VectorizeStreamRequest(sequence=sequence, item=bad[sequence]))
        else:
            kind, content = good[len(kinds)]
            kinds[sequence] = kind
            requests.append(pb.VectorizeStreamRequest(sequence=sequence, item=item(kind, content, f"s{sequence}"),
                                                      encoding=pb.VECTOR_ENCODING_FLOAT32_LE))
    answers = {r.sequence: r for r in stub.VectorizeStream(iter(requests), timeout=60)}
    assert sorted(answers) == list(range(len(requests)))
    for sequence in bad:
        assert answers[sequence].WhichOneof("result") == "error"
        assert answers[sequence].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert answers[sequence].error.message and answers[sequence].error.reason
    assert "modality must be one of" in answers[7].error.message
    want = expected_vectors(reference, good)
    for position, (sequence, kind) in enumerate(kinds.items()):
        answer = answers[sequence]
        assert answer.WhichOneof("result") == "embedding", answer.error.message
        assert answer.id == f"s{sequence}" and answer.embedding.modality == pb.Modality.Value(
            f"MODALITY_{kind.value.upper()}")
        np.testing.assert_allclose(embedding_vector(answer.embedding), want[position], atol=ATOL)


def test_stream_bounds_items_in_flight(loop_thread: LoopThread, server_settings: Settings,
                                       shared_embedder: Embedder) -> None:
    """While the model is held (work piles up), a stream of 3 windows of items never has more than
    STREAM_MAX_IN_FLIGHT of them admitted at once; once the model runs again, all are answered."""
    settings = server_settings.replace(max_batch_size=1000, queue_size=1000, cache_size=0)
    running = InProcessServer(loop_thread, settings, lambda s: GatedModelEngine(s, embedder=shared_embedder))
    channel, stub = grpc_stub(running.grpc_target)
    answers: list[pb.VectorizeStreamResponse] = []
    count = 3 * STREAM_MAX_IN_FLIGHT

    def depth() -> float:
        return running.sample("imagebind_queue_depth", {"kind": "text"})

    def consume() -> None:
        requests = (pb.VectorizeStreamRequest(sequence=i, item=item(InputKind.TEXT, f"item number {i}"))
                    for i in range(count))
        answers.extend(stub.VectorizeStream(requests, timeout=60))

    GatedModelEngine.gate.clear()
    consumer = threading.Thread(target=consume)
    try:
        consumer.start()
        wait_until(lambda: depth() == STREAM_MAX_IN_FLIGHT, timeout=30)  # the window filled ...
        held = [depth() for _ in range(50) if not time.sleep(0.01)]
        assert max(held) == STREAM_MAX_IN_FLIGHT and not answers  # ... and reads stopped there
        GatedModelEngine.gate.set()
        consumer.join(60)
    finally:
        GatedModelEngine.gate.set()
        channel.close()
        running.stop()
    assert sorted(a.sequence for a in answers) == list(range(count))
    assert all(a.WhichOneof("result") == "embedding" for a in answers)


def test_stream_refused_while_not_ready(loop_thread: LoopThread, server_settings: Settings) -> None:
    gate = GatedEngineFactory()
    running = InProcessServer(loop_thread, server_settings, gate, wait_ready=False)
    channel, stub = grpc_stub(running.grpc_target)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.VectorizeStream(iter([pb.VectorizeStreamRequest(item=item(InputKind.TEXT, "x"))]), timeout=10))
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as caught:
            stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "x")]), timeout=10)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert stub.Meta(pb.MetaRequest(), timeout=10).state == "starting"
    finally:
        gate.release(loop_thread)
        running.wait_loaded()
        channel.close()
        running.stop()


# Deadlines ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gated_model(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder):
    running = InProcessServer(loop_thread, server_settings.replace(cache_size=0),
                              lambda s: GatedModelEngine(s, embedder=shared_embedder))
    GatedModelEngine.gate.set()
    yield running
    GatedModelEngine.gate.set()
    running.stop()


def model_rows(server: InProcessServer) -> float:
    return server.sample("imagebind_batch_rows_sum", {"kind": "text"})


def test_deadline_exceeded_item_is_never_computed(gated_model: InProcessServer) -> None:
    """While the model is busy (here: held at a gate) an item waits in the server's queue; once its
    deadline has passed it is answered DEADLINE_EXCEEDED and leaves the queue at once (the model
    still held), never computed. (A deadline of 0 s would expire in the client, never reaching the
    server: the item is seen queued on the server first.)"""
    channel, stub = grpc_stub(gated_model.grpc_target)

    def text_depth() -> float:
        return gated_model.sample("imagebind_queue_depth", {"kind": "text"})

    try:
        before = model_rows(gated_model)
        GatedModelEngine.gate.clear()
        GatedModelEngine.entered.clear()
        blocker = threading.Thread(target=lambda: stub.Vectorize(
            pb.VectorizeRequest(items=[item(InputKind.TEXT, "blocker")]), timeout=60))
        blocker.start()
        assert GatedModelEngine.entered.wait(30), "the blocker never reached the model"
        late = stub.Vectorize.future(pb.VectorizeRequest(items=[item(InputKind.TEXT, "too late")]), timeout=1.0)
        wait_until(lambda: text_depth() == 2, timeout=10)  # the late item is queued on the server
        assert late.exception(30).code() is grpc.StatusCode.DEADLINE_EXCEEDED
        wait_until(lambda: text_depth() == 1, timeout=2)  # and left the queue while the model is held
        assert GatedModelEngine.entered.is_set() and not GatedModelEngine.gate.is_set()
        GatedModelEngine.gate.set()
        blocker.join(30)
        wait_until(lambda: text_depth() == 0, timeout=10)
        assert model_rows(gated_model) == before + 1  # the blocker's row only
        # a call with time to spare is computed
        response = stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "in time")]), timeout=30)
        assert len(response.embeddings) == 1 and model_rows(gated_model) == before + 2
    finally:
        GatedModelEngine.gate.set()
        channel.close()


# Health and reflection ----------------------------------------------------------------------------
def health_status(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_health_serving_and_unknown_service(server: InProcessServer) -> None:
    for service in ("", SERVICE_NAME):
        assert health_status(server.grpc_target, service) == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health_status(server.grpc_target, "no.such.Service")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


def test_health_follows_loading_and_draining(loop_thread: LoopThread, server_settings: Settings) -> None:
    gate = GatedEngineFactory()
    running = InProcessServer(loop_thread, server_settings, gate, wait_ready=False)
    try:
        with grpc.insecure_channel(running.grpc_target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                                                              timeout=60)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            for service in ("", SERVICE_NAME):
                assert health_status(running.grpc_target, service) == health_pb2.HealthCheckResponse.NOT_SERVING
            gate.release(loop_thread)
            running.wait_loaded()
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            assert health_status(running.grpc_target, "") == health_pb2.HealthCheckResponse.SERVING
            assert loop_thread.run(running.engine.drain(5))
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            for service in ("", SERVICE_NAME):
                assert health_status(running.grpc_target, service) == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
    finally:
        running.stop()


def test_reflection_lists_the_services(server: InProcessServer) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = list(stub.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME),
        ]), timeout=10))
    names = {s.name for s in responses[0].list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert responses[1].file_descriptor_response.file_descriptor_proto  # the proto itself is served


def test_grpc_requests_are_counted_by_method_and_code(server: InProcessServer, stub) -> None:
    endpoint = f"/{SERVICE_NAME}/Vectorize"

    def count(code: str) -> float:
        return server.sample("imagebind_requests_total", {"transport": "grpc", "endpoint": endpoint, "status": code})

    ok, invalid = count("OK"), count("INVALID_ARGUMENT")
    stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "counted")]), timeout=30)
    with pytest.raises(grpc.RpcError):
        stub.Vectorize(pb.VectorizeRequest(items=[pb.Item(modality=pb.MODALITY_IMAGE, data=b"junk")]), timeout=30)
    assert (count("OK"), count("INVALID_ARGUMENT")) == (ok + 1, invalid + 1)
    assert server.sample("imagebind_request_seconds_count", {"transport": "grpc", "endpoint": endpoint}) >= 2
