"""One typed ModelInfo, rendered by each transport in one place: HTTP as the camelCase `/meta`
JSON that Weaviate and our clients read (the keys are a contract), gRPC as `MetaResponse`."""

from __future__ import annotations

import dataclasses
import json

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess.profiles import Profile
from imagebind_vectorizer.runtime.info import CheckpointInfo, ModelInfo
from imagebind_vectorizer.server.grpc_service import STREAM_MAX_IN_FLIGHT, meta_response
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.server.weaviate_http import meta_json
from imagebind_vectorizer.settings import OutputScaling, Settings

INFO = ModelInfo(
    name="imagebind-huge", server_version="9.9.9", architecture="huge", architecture_config={"out_embed_dim": 1024},
    dimensions=1024, checkpoint=CheckpointInfo(path="/w/imagebind_huge.pth", size=4_800_000_000, sha256="ab" * 32),
    encoders=("text", "audio"), input_kinds=(InputKind.TEXT, InputKind.AUDIO), device="cuda:0", dtype="bfloat16",
    dtype_reason="bfloat16: a model-sized matmul runs 3.9x faster than in float32 on NVIDIA H100",
    preprocessing=Profile.WEAVIATE_LEGACY, output_scaling=OutputScaling.OFFICIAL,
    logit_scales={"text": 100.0, "audio": 20.0},
)


def test_http_meta_keeps_its_keys_and_values() -> None:
    meta = meta_json(INFO, "ready", None)
    assert json.loads(json.dumps(meta)) == {
        "model": "ImageBindModel", "version": 1, "name": "imagebind-huge", "server": "imagebind-vectorizer",
        "serverVersion": "9.9.9", "architecture": "huge", "architectureConfig": {"out_embed_dim": 1024},
        "dimensions": 1024,
        "checkpoint": {"name": "imagebind_huge.pth", "sizeBytes": 4_800_000_000, "sha256": "ab" * 32,
                       "weights": "checkpoint"},
        "modalities": ["text", "audio"], "inputKinds": ["text", "audio"], "device": "cuda:0", "dtype": "bfloat16",
        "dtypeReason": "bfloat16: a model-sized matmul runs 3.9x faster than in float32 on NVIDIA H100",
        "preprocessing": "weaviate-legacy", "outputScaling": "official",
        "logitScales": {"text": 100.0, "audio": 20.0}, "state": "ready",
    }


def test_http_meta_before_the_model_is_loaded() -> None:
    assert meta_json(None, "failed", "no checkpoint") == {
        "model": "ImageBindModel", "version": 1, "server": "imagebind-vectorizer", "state": "failed",
        "error": "no checkpoint"}


def test_grpc_meta_renders_the_same_record() -> None:
    settings = Settings(max_request_bytes=1234)
    meta = meta_response(INFO, "ready", None, settings)
    assert (meta.model, meta.name, meta.server, meta.server_version, meta.state) == (
        "ImageBindModel", "imagebind-huge", "imagebind-vectorizer", "9.9.9", "ready")
    assert json.loads(meta.architecture_config_json) == {"out_embed_dim": 1024} and meta.dimensions == 1024
    assert (meta.checkpoint.name, meta.checkpoint.size_bytes, meta.checkpoint.sha256, meta.checkpoint.weights) == (
        "imagebind_huge.pth", 4_800_000_000, "ab" * 32, "checkpoint")
    assert list(meta.encoders) == ["text", "audio"]
    assert list(meta.modalities) == [pb.MODALITY_TEXT, pb.MODALITY_AUDIO]
    assert (meta.device, meta.dtype, meta.preprocessing, meta.output_scaling) == (
        "cuda:0", "bfloat16", "weaviate-legacy", "official")
    assert meta.dtype_reason == INFO.dtype_reason
    assert meta.max_message_bytes == 1234 and meta.stream_max_in_flight == STREAM_MAX_IN_FLIGHT
    assert meta.error == ""


def test_grpc_meta_before_the_model_is_loaded() -> None:
    meta = meta_response(None, "starting", None, Settings())
    assert (meta.model, meta.server, meta.state, meta.name, meta.dimensions) == (
        "ImageBindModel", "imagebind-vectorizer", "starting", "", 0)


def test_random_weights_say_so() -> None:
    random = CheckpointInfo(path=None, size=None, sha256=None, random_seed=0)
    assert random.weights == "random" and random.model_id == "random-0"
    assert meta_json(dataclasses.replace(INFO, checkpoint=random), "ready", None)["checkpoint"] == {
        "name": None, "sizeBytes": None, "sha256": None, "weights": "random"}


def test_neither_transport_reveals_the_checkpoints_folder() -> None:
    """/meta reaches every Weaviate user (Weaviate shows it under /v1/meta): the checkpoint is named
    by its file name and digest, never by where it lies on the server."""
    http = json.dumps(meta_json(INFO, "ready", None))
    grpc = str(meta_response(INFO, "ready", None, Settings()))
    for text in (http, grpc):
        assert "imagebind_huge.pth" in text and "ab" * 32 in text
        assert "/w/" not in text
