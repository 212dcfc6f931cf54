"""Thermal images -> (1, 1, 224, 224): one channel, like Weaviate's container (there is no
official loader). 16-bit radiometric images are rescaled to 8 bits over their own range in the
official profile rather than clipped at 255 by Pillow."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from imagebind_vectorizer.preprocess.depth import grayscale_tensor
from imagebind_vectorizer.preprocess.imaging import SIXTEEN_BIT_MODES, open_image
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions


def rescale_to_8bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = np.zeros_like(values) if high <= low else (values - low) * (255.0 / (high - low))
    return Image.fromarray(np.rint(scaled).astype(np.uint8))


def preprocess_thermal(data: bytes, options: PreprocessOptions) -> torch.Tensor:
    image = open_image(data, options.limits, exif_transpose=options.exif_transpose)
    if image.mode in SIXTEEN_BIT_MODES and options.behaviour.thermal_16bit_rescaled:
        image = rescale_to_8bit(image)
    return grayscale_tensor(image)
