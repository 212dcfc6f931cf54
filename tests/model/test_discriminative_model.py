"""The shared tiny checkpoint must tell inputs apart, or parity tests compare constants.

With the plain random init two different pictures embedded at cosine 0.9999963 and two videos at
0.9999948, so a wrong picture or a dropped clip passed every parity check by cosine. The session's
checkpoint is drawn by `discriminative_init` (tests/tiny_model.py); this test keeps that property from
eroding: distinct inputs of every kind must stay far apart (`SPREAD_MAX_COSINE`)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from imagebind_vectorizer.kinds import InputKind
from tests import media

#: the largest cosine allowed between two distinct inputs of each kind, measured with the session's
#: checkpoint (with the plain std-0.02 init in brackets) plus a margin: text 0.755 (0.857), image
#: 0.872 (0.99999), video 0.971 (0.999997; the mean of 15 views pulls videos together), audio 0.695
#: (0.9990), depth 0.622 (0.969), thermal 0.912 (0.9998), IMU 0.965 (0.999999). Every bound is at
#: least 1e-2 below 1, a thousand times the 1e-5 that the cosine parity checks allow.
SPREAD_MAX_COSINE = {
    InputKind.TEXT: 0.9, InputKind.IMAGE: 0.95, InputKind.VIDEO: 0.99, InputKind.AUDIO: 0.9,
    InputKind.DEPTH: 0.9, InputKind.THERMAL: 0.97, InputKind.IMU: 0.99,
}


def gray(seed: int) -> bytes:
    return media.encode_image(media.picture(320, 240, seed=seed).convert("L"), "PNG")


@functools.cache
def distinct_inputs() -> dict[InputKind, list[bytes | str]]:
    """A few inputs per kind that differ in content (not only in order or phase)."""
    imu = media.imu_samples(2000, seed=0)
    return {
        InputKind.TEXT: ["a dog barking", "rain on a window", "a red square on a table"],
        InputKind.IMAGE: [media.image_bytes("PNG", 320, 240, seed=s) for s in (1, 2, 3)],
        InputKind.VIDEO: [media.video_bytes(3, 10, 160, 120, seed=s) for s in (0, 1)],
        InputKind.AUDIO: [media.audio_bytes("wav", 3.0, freq=f, seed=i) for i, f in enumerate((330, 440, 880))],
        InputKind.DEPTH: [media.depth_png_8bit(), gray(6), media.depth_png_16bit_mm()],
        InputKind.THERMAL: [media.thermal_jpeg(), media.thermal_jpeg(seed=5), gray(7)],
        InputKind.IMU: [media.imu_csv(x) for x in (imu, media.imu_samples(2000, seed=1) * 0.5,
                                                   imu[[3, 4, 5, 0, 1, 2]])],
    }


def max_cosine(vectors: np.ndarray) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ unit.T
    return float(cos[~np.eye(len(cos), dtype=bool)].max())


@pytest.mark.parametrize("kind", list(InputKind), ids=str)
def test_distinct_inputs_embed_far_apart(tiny_embedder, kind: InputKind) -> None:
    items = distinct_inputs()[kind]
    vectors = tiny_embedder.embed(kind, items)
    cosine = max_cosine(vectors)
    assert cosine <= SPREAD_MAX_COSINE[kind], (
        f"{kind.value}: two distinct inputs embed at cosine {cosine:.7f}; the test checkpoint no longer "
        "separates inputs, so parity tests could not fail")
