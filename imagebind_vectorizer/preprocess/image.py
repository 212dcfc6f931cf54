"""Images: any format Pillow reads -> (1, 3, 224, 224), exactly the official vision transform."""

from __future__ import annotations

import torch

from imagebind_vectorizer.preprocess.imaging import CLIP_MEAN, CLIP_STD, clip_transform, open_image
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions


def preprocess_image(data: bytes, options: PreprocessOptions) -> torch.Tensor:
    # Both profiles convert to RGB the same way: alpha dropped, palette/CMYK/16-bit via Pillow.
    image = open_image(data, options.limits, exif_transpose=options.exif_transpose)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return clip_transform(image, CLIP_MEAN, CLIP_STD)[None]
