"""Output scaling: "official" returns the reference model's scaled (and clip-averaged) outputs;
"unit" returns the same directions at unit length."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from tests import media
from tests.helpers import assert_vectors_match, reference_embed

TEXT_LOG_SCALE = 4.2  # what the session checkpoint stores (conftest): exp(4.2) = 66.69 < 100


@pytest.fixture(scope="module")
def items() -> dict[InputKind, list[bytes | str]]:
    return {
        InputKind.TEXT: ["a dog", "a cat on a mat"],
        InputKind.IMAGE: [media.image_bytes("PNG", seed=1), media.image_bytes("JPEG", 200, 300, seed=2)],
        InputKind.AUDIO: [media.audio_bytes("wav", 1.0, seed=1), media.audio_bytes("wav", 5.0, freq=200, seed=2)],
        InputKind.VIDEO: [media.video_bytes(3, 6, 96, 64, seed=3)],
        InputKind.DEPTH: [media.depth_png_8bit()],
        InputKind.THERMAL: [media.thermal_jpeg()],
        InputKind.IMU: [media.imu_csv(media.imu_samples(2000))],
    }


def norms(vectors: np.ndarray) -> np.ndarray:
    return np.linalg.norm(vectors.astype(np.float64), axis=-1)


@pytest.mark.reference
def test_official_scaling_returns_the_reference_outputs(make_embedder, ref_tiny_model, items) -> None:
    embedder = make_embedder(output_scaling="official")
    for kind, inputs in items.items():
        vectors = embedder.embed(kind, inputs)
        # The reference model on the same model inputs, with its own multi-clip handling (ndim >= 5).
        tensors = [embedder.preprocess(kind, item) for item in inputs]
        batch = torch.stack(tensors) if kind in (InputKind.AUDIO, InputKind.VIDEO) else torch.cat(tensors)
        assert_vectors_match(vectors, reference_embed(ref_tiny_model, kind.encoder, batch),
                             label="vectors official scaling", rtol=1e-5, what=kind.value)


def test_official_norms_carry_the_modality_scale(make_embedder, items) -> None:
    embedder = make_embedder(output_scaling="official")
    got = {kind: norms(embedder.embed(kind, inputs)) for kind, inputs in items.items()}
    text_scale = math.exp(TEXT_LOG_SCALE)
    np.testing.assert_allclose(got[InputKind.TEXT], text_scale, rtol=1e-5)
    np.testing.assert_allclose(got[InputKind.IMAGE], 1.0, rtol=1e-5)
    np.testing.assert_allclose(got[InputKind.DEPTH], 5.0, rtol=1e-5)
    np.testing.assert_allclose(got[InputKind.THERMAL], 10.0, rtol=1e-5)
    np.testing.assert_allclose(got[InputKind.IMU], 5.0, rtol=1e-5)
    # Averages of scaled clips: a 1 s file has three (almost) identical clips, a 5 s file three
    # different ones; a video's 15 views differ.
    assert got[InputKind.AUDIO][0] == pytest.approx(20.0, rel=1e-4)
    assert got[InputKind.AUDIO][1] < 20.0 - 1e-3
    assert got[InputKind.VIDEO][0] < 1.0 - 1e-6  # the tiny random model keeps the views close


def test_unit_scaling_keeps_the_directions(make_embedder, items) -> None:
    official = make_embedder(output_scaling="official")
    unit = make_embedder(output_scaling="unit")
    for kind, inputs in items.items():
        scaled, normalised = official.embed(kind, inputs), unit.embed(kind, inputs)
        np.testing.assert_allclose(norms(normalised), 1.0, rtol=1e-6, err_msg=kind.value)
        np.testing.assert_allclose(normalised, scaled / norms(scaled)[:, None], rtol=1e-5, atol=1e-7,
                                   err_msg=kind.value)


@pytest.mark.reference
def test_text_scale_is_capped_at_100(tmp_path: Path, tiny_checkpoint: Path, tiny_settings, ref,
                                     tiny_config) -> None:
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["modality_postprocessors.text.1.log_logit_scale"] = torch.tensor(5.0)  # exp(5) = 148.4
    path = tmp_path / "big_text_scale.pth"
    torch.save(state, path)
    embedder = Embedder(tiny_settings.replace(checkpoint=str(path), output_scaling="official",
                                              modalities="text"), progress=False)
    vectors = embedder.embed("text", ["a dog", "a much longer sentence about a cat"])
    np.testing.assert_allclose(norms(vectors), 100.0, rtol=1e-5)
    reference = ref.model.ImageBindModel(**tiny_config.official_kwargs()).eval()
    reference.load_state_dict(state, strict=True)
    ids = torch.cat([embedder.preprocess("text", t) for t in ["a dog", "a much longer sentence about a cat"]])
    assert_vectors_match(vectors, reference_embed(reference, "text", ids), label="vectors official scaling",
                         rtol=1e-5, what="text capped at 100")
