"""Image decoding and the CLIP-style transform shared by images, depth and thermal: Pillow decode,
short side to 224 with Pillow's (antialiased) bicubic, centre crop 224, scale to [0, 1], normalise.
The arithmetic matches torchvision's Resize/CenterCrop/ToTensor/Normalize on a PIL image."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from imagebind_vectorizer.errors import InputError, first_line
from imagebind_vectorizer.kinds import IMAGE_SIZE
from imagebind_vectorizer.preprocess.profiles import Limits

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def open_image(data: bytes, limits: Limits, *, exif_transpose: bool = False) -> Image.Image:
    """Decode the first frame of any image Pillow reads, refusing decompression bombs before the
    pixels are decoded."""
    if not data:
        raise InputError("empty image", reason="empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InputError(f"image has too many pixels: {first_line(exc)}", reason="too_large") from exc
    except UnidentifiedImageError as exc:
        raise InputError("not an image Pillow can read (unknown or corrupt format)", reason="decode") from exc
    except Exception as exc:
        raise InputError(f"cannot read image: {first_line(exc)}", reason="decode") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise InputError(f"image has no pixels ({width}x{height})", reason="decode")
    if width * height > limits.max_image_pixels:
        raise InputError(f"image is {width}x{height} = {width * height} pixels, over the limit of "
                         f"{limits.max_image_pixels}", reason="too_large")
    if max(width, height) / min(width, height) > limits.max_image_aspect_ratio:
        raise InputError(f"image is {width}x{height}; aspect ratios over {limits.max_image_aspect_ratio:g} "
                         "are refused", reason="too_large")
    try:
        image.load()
        if exif_transpose:
            image = ImageOps.exif_transpose(image)
    except Exception as exc:  # truncated files, bad chunks, broken EXIF
        raise InputError(f"corrupt or truncated image: {first_line(exc)}", reason="decode") from exc
    if image.mode == "F" and not _all_finite(image):
        raise InputError("image holds NaN or infinite values", reason="invalid")
    return image


def _all_finite(image: Image.Image, band_rows: int = 256) -> bool:
    """Whether a float image has only finite pixels, read in bands of rows (no full copy)."""
    width, height = image.size
    for top in range(0, height, band_rows):
        if not np.isfinite(np.asarray(image.crop((0, top, width, min(top + band_rows, height))))).all():
            return False
    return True


def resize_short_side(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    if (new_w, new_h) == (width, height):
        return image
    return image.resize((new_w, new_h), Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    width, height = image.size
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def normalized_tensor(image: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(C, H, W) float32 in [0, 1] (8-bit modes) or as-is (mode "F"), then (x - mean) / std."""
    if image.mode == "F":
        array = np.array(image, dtype=np.float32)[None]
    else:
        array = np.asarray(image, dtype=np.uint8)
        array = (array[None] if array.ndim == 2 else array.transpose(2, 0, 1)).astype(np.float32) / 255.0
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    return tensor.sub_(mean_t).div_(std_t)


def clip_transform(image: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    return normalized_tensor(center_crop(resize_short_side(image)), mean, std)
