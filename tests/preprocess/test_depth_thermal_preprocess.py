"""Depth and thermal maps. The official code has no loader for them; the oracle is what Weaviate's
container computes (Pillow "L", Resize 224 bicubic, CenterCrop, ToTensor, one-channel CLIP
normalisation), composed from torchvision in `tests.helpers.container_gray_oracle`. 16-bit depth
in the official profile is metric depth converted to disparity instead."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import DepthOptions, PreprocessOptions, Profile, preprocess
from tests import media
from tests.helpers import assert_tensors_match, assert_vectors_match, container_gray_oracle, reference_embed

OFFICIAL = PreprocessOptions()
LEGACY = PreprocessOptions(profile=Profile.WEAVIATE_LEGACY)
#: vectors vs the reference model on the oracle tensor (element difference per vector norm, and norm
#: ratio). Measured 0 (the same tensors, the same ops); 1e-5 as for every model comparison.
VECTOR_RTOL = 1e-5

EIGHT_BIT = {
    "depth-png-8bit": media.depth_png_8bit(),
    "thermal-jpeg-rgb": media.thermal_jpeg(),
    "thermal-jpeg-llvip-size": media.thermal_jpeg(1280, 1024, seed=1),
    "gray-png-portrait": media.encode_image(media.picture(200, 300, seed=6).convert("L"), "PNG"),
    "rgb-png": media.image_bytes("PNG", 300, 200, seed=7),
    "palette-png": media.encode_image(media.picture(240, 240, seed=8).convert("P"), "PNG"),
}


@pytest.mark.reference
@pytest.mark.parametrize("kind", [InputKind.DEPTH, InputKind.THERMAL], ids=str)
@pytest.mark.parametrize("name", sorted(EIGHT_BIT))
def test_8bit_maps_equal_the_container(ref_tiny_model, make_embedder, kind: InputKind, name: str) -> None:
    data = EIGHT_BIT[name]
    expected = container_gray_oracle(data)
    for options in (OFFICIAL, LEGACY):
        ours = preprocess(kind, data, options)
        assert ours.shape == (1, 1, 224, 224)
        assert_tensors_match(ours[0], expected, label=f"tensor {kind.value}", atol=1e-6,
                             what=f"{name}/{options.profile}")
    vector = make_embedder(output_scaling="official").embed(kind, [data])
    assert_vectors_match(vector, reference_embed(ref_tiny_model, kind.value, expected[None]),
                         label=f"vectors {kind.value}", rtol=VECTOR_RTOL, what=name)


DEFAULT_DEPTH = DepthOptions()


def disparity(raw: np.ndarray, options: DepthOptions = DEFAULT_DEPTH) -> np.ndarray:
    """The documented formula, written out: metres = raw / units; clip to [min, max] m;
    disparity = baseline * focal / metres, clipped to max_disparity and scaled to [0, 1]; raw 0
    (no reading) stays 0."""
    metres = raw.astype(np.float64) / options.units_per_meter
    clipped = np.clip(metres, options.min_depth_m, options.max_depth_m)
    value = np.minimum(options.baseline_m * options.focal_px / clipped, options.max_disparity_px)
    return np.where(raw == 0, 0.0, value / options.max_disparity_px)


def test_16bit_depth_becomes_disparity_in_the_official_profile() -> None:
    # 224x224, so no resize or crop: output pixels are the formula's values.
    raw = np.full((224, 224), 2000, dtype=np.uint16)
    raw[0, 0], raw[0, 1], raw[0, 2], raw[0, 3], raw[0, 4], raw[0, 5] = 0, 1000, 500, 65535, 3000, 2001
    data = media.encode_image(Image.fromarray(raw), "PNG")
    out = preprocess(InputKind.DEPTH, data, OFFICIAL)[0, 0]
    # Hand-computed: 1 m -> 0.075 * 518.857901 / 1 = 38.9143 px -> / 75 = 0.518858
    assert out[0, 1].item() == pytest.approx(0.075 * 518.857901 / 1.0 / 75, rel=1e-6)
    assert out[0, 0].item() == 0.0, "zero means no reading and stays zero"
    assert out[0, 2].item() == pytest.approx(1.0, rel=1e-6), "0.5 m is nearer than 75 px of disparity: clamped"
    assert out[0, 3].item() == pytest.approx(0.075 * 518.857901 / 50 / 75, rel=1e-6), "beyond 50 m: clamped"
    assert out[0, 4].item() == pytest.approx(0.075 * 518.857901 / 3.0 / 75, rel=1e-6)
    # Not squeezed through 8 bits: 2000 and 2001 mm differ by 1e-4, far below one 8-bit step.
    step = out[0, 5].item() - out[1, 1].item()
    assert 0 < -step < 1 / 255, step
    assert torch.allclose(out, torch.from_numpy(disparity(raw)).float(), atol=1e-6)


def test_16bit_depth_resized_like_the_official_transform() -> None:
    data = media.depth_png_16bit_mm(320, 240)
    raw = np.asarray(Image.open(io.BytesIO(data)))
    expected = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                          T.ToTensor()])(Image.fromarray(disparity(raw).astype(np.float32)))
    ours = preprocess(InputKind.DEPTH, data, OFFICIAL)[0]
    assert_tensors_match(ours, expected, label="tensor depth 16-bit disparity", atol=1e-5)


def test_16bit_depth_follows_pillow_in_the_legacy_profile() -> None:
    data = media.depth_png_16bit_mm(320, 240)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    ours = preprocess(InputKind.DEPTH, data, LEGACY)[0]
    assert_tensors_match(ours, container_gray_oracle(data), label="tensor depth", atol=1e-6, what="16-bit legacy")
    assert not torch.allclose(ours, preprocess(InputKind.DEPTH, data, OFFICIAL)[0])


def test_16bit_thermal_is_rescaled_over_its_range_in_the_official_profile() -> None:
    counts = (20000 + 4000 * np.sin(np.arange(240 * 320).reshape(240, 320) / 500.0)).astype(np.uint16)
    data = media.encode_image(Image.fromarray(counts), "PNG")
    low, high = float(counts.min()), float(counts.max())
    rescaled = np.rint((counts - low) * (255.0 / (high - low))).astype(np.uint8)
    expected = container_gray_oracle(media.encode_image(Image.fromarray(rescaled), "PNG"))
    official = preprocess(InputKind.THERMAL, data, OFFICIAL)[0]
    assert_tensors_match(official, expected, label="tensor thermal", atol=1e-6, what="16-bit rescaled")
    legacy = preprocess(InputKind.THERMAL, data, LEGACY)[0]
    assert_tensors_match(legacy, container_gray_oracle(data), label="tensor thermal", atol=1e-6,
                         what="16-bit legacy")
    assert legacy.std() < official.std() / 10, "Pillow clips radiometric counts to one grey level"
