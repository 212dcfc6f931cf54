"""Weaviate's multi2vec-bind contract over a real server on 127.0.0.1, posted exactly as Weaviate's
Go client posts it: no Content-Type, omitted empty lists, one object per request."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.conftest import TINY_DIM
from tests.server.support import (
    RESPONSE_KEYS,
    GatedEngineFactory,
    InProcessServer,
    LoopThread,
    go_request,
    http_vectorize,
    metric_samples,
    metrics_text,
    sample_value,
    vectorize_body,
    wait_until,
)

ATOL = 1e-5


def test_go_client_request_with_every_modality(server: InProcessServer, reference: Embedder) -> None:
    texts = ["a red car", "", "the sound of a violin"]  # an empty text is a text too
    images = [media.image_bytes("JPEG", 120, 90, seed=1), media.image_bytes("PNG", 60, 90, seed=2)]
    audio = [media.audio_bytes("wav", seconds=1.0, seed=3)]
    video = [media.video_bytes(seconds=1.0, fps=5, width=64, height=48, seed=4)]
    imu = [media.imu_csv(media.imu_samples(500, seed=5)), media.imu_npy(media.imu_samples(100, seed=6))]
    thermal = [media.thermal_jpeg(64, 48)]
    depth = [media.depth_png_8bit(64, 48), media.depth_png_16bit_mm(64, 48)]
    body = vectorize_body(texts, images=images, audio=audio, video=video, imu=imu, thermal=thermal, depth=depth)
    response = http_vectorize(server.http_port, body)
    assert response.status == 200, response.body
    assert response.headers["content-type"].startswith("application/json")
    result = response.json()
    assert set(result) == set(RESPONSE_KEYS)
    for key, kind, items in [("textVectors", "text", texts), ("imageVectors", "image", images),
                             ("audioVectors", "audio", audio), ("videoVectors", "video", video),
                             ("imuVectors", "imu", imu), ("thermalVectors", "thermal", thermal),
                             ("depthVectors", "depth", depth)]:
        vectors = np.asarray(result[key], dtype=np.float32)
        assert vectors.shape == (len(items), TINY_DIM), key
        np.testing.assert_allclose(vectors, reference.embed(kind, items), atol=ATOL, err_msg=key)


def test_omitted_fields_read_as_empty(server: InProcessServer, reference: Embedder) -> None:
    images = [media.image_bytes("PNG", 80, 80, seed=9)]
    result = http_vectorize(server.http_port, vectorize_body(images=images)).json()
    assert {k: len(v) for k, v in result.items()} == {k: int(k == "imageVectors") for k in RESPONSE_KEYS}
    np.testing.assert_allclose(result["imageVectors"], reference.embed("image", images), atol=ATOL)
    nothing = http_vectorize(server.http_port, b"{}")
    assert nothing.status == 200 and nothing.json() == {k: [] for k in RESPONSE_KEYS}


def test_order_is_preserved_within_each_field(server: InProcessServer, reference: Embedder) -> None:
    texts = [f"text number {i} " + "word " * i for i in range(12)]
    result = http_vectorize(server.http_port, vectorize_body(texts[::-1])).json()
    np.testing.assert_allclose(result["textVectors"], reference.embed("text", texts[::-1]), atol=ATOL)


def test_meta(server: InProcessServer) -> None:
    response = go_request(server.http_port, "GET", "/meta")
    assert response.status == 200
    meta = response.json()
    assert isinstance(meta, dict)
    assert meta["model"] == "ImageBindModel" and meta["state"] == "ready"
    assert meta["architecture"] == "tiny" and meta["dimensions"] == TINY_DIM
    assert meta["modalities"] == ["vision", "text", "audio", "depth", "thermal", "imu"]
    assert meta["device"] == "cpu" and meta["dtype"] == "float32"
    assert meta["preprocessing"] == "official" and meta["outputScaling"] == "unit"
    assert meta["checkpoint"]["name"] == Path(server.settings.checkpoint).name
    assert str(Path(server.settings.checkpoint).parent) not in response.body.decode(), "no folder of the host"
    wait_until(lambda: len(go_request(server.http_port, "GET", "/meta").json()["checkpoint"]["sha256"] or "") == 64)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", ["/.well-known/live", "/.well-known/ready"])
def test_liveness_and_readiness(server: InProcessServer, method: str, path: str) -> None:
    response = go_request(server.http_port, method, path)
    assert (response.status, response.body) == (204, b"")  # README promises 204, not any 2xx


def test_readiness_is_503_while_loading_then_204(loop_thread: LoopThread, server_settings: Settings) -> None:
    gate = GatedEngineFactory()
    running = InProcessServer(loop_thread, server_settings, gate, wait_ready=False)
    try:
        port = running.http_port
        assert go_request(port, "GET", "/.well-known/live").status == 204
        for method in ("GET", "HEAD"):
            assert go_request(port, method, "/.well-known/ready").status == 503
        not_ready = http_vectorize(port, vectorize_body(["too early"]))
        assert not_ready.status == 503 and "loading" in not_ready.json()["error"]
        assert "retry-after" in not_ready.headers
        meta = go_request(port, "GET", "/meta")
        assert meta.status == 200 and meta.json()["state"] == "starting"
        gate.release(loop_thread)
        running.wait_loaded()
        assert go_request(port, "GET", "/.well-known/ready").status == 204
        assert http_vectorize(port, vectorize_body(["on time"])).status == 200
    finally:
        gate.release(loop_thread)
        running.stop()


def test_unknown_path_and_method_get_json_errors(server: InProcessServer) -> None:
    missing = go_request(server.http_port, "GET", "/nope")
    assert missing.status == 404 and "error" in missing.json()
    wrong = go_request(server.http_port, "GET", "/vectorize")
    assert wrong.status == 405 and "error" in wrong.json()


def test_metrics_expose_requests_items_batches_queue_latency_and_errors(server: InProcessServer) -> None:
    port = server.http_port
    assert http_vectorize(port, vectorize_body(["metrics please"], images=[media.image_bytes("PNG", 40, 40)])) \
        .status == 200
    assert http_vectorize(port, vectorize_body(images=[b"not an image"])).status == 400
    text = metrics_text(port)
    samples = metric_samples(text)
    names = {name for name, _ in samples}
    assert sample_value(text, "imagebind_requests_total", transport="http", endpoint="/vectorize", status="200") >= 1
    assert sample_value(text, "imagebind_requests_total", transport="http", endpoint="/vectorize", status="400") >= 1
    assert sample_value(text, "imagebind_items_total", kind="image") >= 1
    assert sample_value(text, "imagebind_items_total", kind="text") >= 1
    assert sample_value(text, "imagebind_batch_rows_count", kind="image") >= 1
    assert sample_value(text, "imagebind_batch_items_count", kind="image") >= 1
    assert ("imagebind_queue_depth", (("kind", "image"),)) in samples
    for stage in ("preprocess", "queue", "forward"):
        assert sample_value(text, "imagebind_stage_seconds_count", kind="image", stage=stage) >= 1
    assert sample_value(text, "imagebind_request_seconds_count", transport="http", endpoint="/vectorize") >= 2
    assert sample_value(text, "imagebind_errors_total", kind="image", reason="decode") >= 1
    assert sample_value(text, "imagebind_ready") == 1
    assert {"imagebind_cache_lookups_total", "imagebind_stage_seconds_bucket"} <= names


def test_json_error_bodies_are_objects_with_error(server: InProcessServer) -> None:
    response = http_vectorize(server.http_port, b"not json")
    assert response.status == 400
    assert set(json.loads(response.body)) == {"error"}
