"""Depth maps -> (1, 1, 224, 224).

8-bit images (and RGB renderings) go through the grayscale path of Weaviate's container: Pillow
"L" conversion, the CLIP transform, one-channel normalisation. 16-bit PNGs hold metric depth; the
official profile converts them to disparity as ImageBind's training recipe (after Omnivore) does
instead of letting Pillow clip them to 8 bits."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.preprocess.imaging import (
    CLIP_MEAN,
    CLIP_STD,
    SIXTEEN_BIT_MODES,
    center_crop,
    clip_transform,
    normalized_tensor,
    open_image,
    resize_short_side,
)
from imagebind_vectorizer.preprocess.profiles import DepthOptions, PreprocessOptions

GRAY_MEAN = (CLIP_MEAN[0],)
GRAY_STD = (CLIP_STD[0],)


def grayscale_tensor(image: Image.Image) -> torch.Tensor:
    if image.mode != "L":
        image = image.convert("L")
    return clip_transform(image, GRAY_MEAN, GRAY_STD)[None]


def metric_depth_to_disparity(depth_raw: np.ndarray, options: DepthOptions) -> np.ndarray:
    """Raw 16-bit depth -> disparity in pixels / max disparity, in [0, 1]. Zero means "no reading"
    in depth sensors and maps to zero disparity (infinitely far), not to the nearest depth."""
    depth_m = depth_raw.astype(np.float32) / np.float32(options.units_per_meter)
    valid = depth_m > 0
    clipped = np.clip(depth_m, options.min_depth_m, options.max_depth_m)
    disparity = np.where(valid, np.float32(options.baseline_m * options.focal_px) / clipped, 0.0)
    return (np.clip(disparity, 0.0, options.max_disparity_px) / options.max_disparity_px).astype(np.float32)


def preprocess_depth(data: bytes, options: PreprocessOptions) -> torch.Tensor:
    image = open_image(data, options.limits, exif_transpose=options.exif_transpose)
    if image.mode in SIXTEEN_BIT_MODES and options.behaviour.depth_16bit_as_metric:
        raw = np.asarray(image)
        if not np.isfinite(raw).all() or (raw < 0).any():
            raise InputError("depth image holds negative or non-finite values", reason="invalid")
        disparity = Image.fromarray(metric_depth_to_disparity(raw, options.depth))
        return normalized_tensor(center_crop(resize_short_side(disparity)), (0.0,), (1.0,))[None]
    return grayscale_tensor(image)
