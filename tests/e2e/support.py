"""Helpers for the end-to-end tests: media with distinct contents, files, vector arithmetic,
and Weaviate's own way of combining an object's field vectors (written out independently of the
library, from Weaviate v1.39's modules/multi2vec-bind/vectorizer/vectorizer.go and
usecases/vectorizer/combine.go)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient
from tests import media

ROOT = Path(__file__).resolve().parents[2]

# Media -------------------------------------------------------------------------------------------
def gray_picture(seed: int, fmt: str) -> bytes:
    return media.encode_image(media.picture(96, 72, seed=seed).convert("L"), fmt)


def imu_recording(seed: int) -> bytes:
    rng = np.random.default_rng(100 + seed)
    samples = rng.standard_normal((6, 400)).astype(np.float32) * (1 + seed)
    return media.imu_csv(samples)


def unit(vector: np.ndarray | list[float]) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64)
    return v / np.linalg.norm(v)


def cosine(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    return float(unit(a) @ unit(b))


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("IMAGEBIND_DTYPE", "float32")  # `auto` may choose bfloat16 on the test machine
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


#: Weaviate's order of an object's vectors (and of the weights lists), with the module-config key
#: of each kind and which of our request fields it goes to
WEAVIATE_ORDER: tuple[tuple[str, InputKind], ...] = (
    ("textFields", InputKind.TEXT), ("imageFields", InputKind.IMAGE), ("audioFields", InputKind.AUDIO),
    ("videoFields", InputKind.VIDEO), ("imuFields", InputKind.IMU), ("thermalFields", InputKind.THERMAL),
    ("depthFields", InputKind.DEPTH),
)


def weaviate_combination(ours: VectorizerClient, properties: Mapping[str, Any],
                         module_config: Mapping[str, Any]) -> np.ndarray:
    """What Weaviate's multi2vec-bind should store for an object: for each kind in Weaviate's
    order, the object's string properties listed in that kind's fields, in sorted name order,
    embedded by our server; then sum(w_i * v_i) / N with the configured weights concatenated in
    the same kind order and normalised to sum 1 (position i of the weights goes with vector i),
    or the plain mean without weights."""
    vectors: list[np.ndarray] = []
    for key, kind in WEAVIATE_ORDER:
        fields = module_config.get(key) or []
        for prop in sorted(properties):
            value = properties[prop]
            if prop in fields and isinstance(value, str):
                # text as is, media as the stored base64: what Weaviate forwards
                vectors.append(ours.vectorize({kind: [value]})[kind][0].astype(np.float64))
    assert vectors, "the object has none of the configured fields"
    weights_cfg = module_config.get("weights") or {}
    if not weights_cfg:
        return np.mean(vectors, axis=0)
    weights = np.array([w for key, _ in WEAVIATE_ORDER for w in weights_cfg.get(key) or []], dtype=np.float64)
    weights = weights / weights.sum()
    return sum(weights[i] * v for i, v in enumerate(vectors)) / len(vectors)
