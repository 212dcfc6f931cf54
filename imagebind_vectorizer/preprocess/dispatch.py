"""One entry point for every kind: the byte limit, then the kind's preprocessor, with any failure
inside a decoder turned into an InputError."""

from __future__ import annotations

from collections.abc import Callable

import torch

from imagebind_vectorizer.errors import DeadlineExceededError, InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess.audio import preprocess_audio
from imagebind_vectorizer.preprocess.depth import preprocess_depth
from imagebind_vectorizer.preprocess.image import preprocess_image
from imagebind_vectorizer.preprocess.imu import preprocess_imu
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions
from imagebind_vectorizer.preprocess.text import preprocess_text
from imagebind_vectorizer.preprocess.thermal import preprocess_thermal
from imagebind_vectorizer.preprocess.video import preprocess_video

Preprocessor = Callable[[bytes, PreprocessOptions], torch.Tensor]

PREPROCESSORS: dict[InputKind, Callable[..., torch.Tensor]] = {
    InputKind.TEXT: preprocess_text,
    InputKind.IMAGE: preprocess_image,
    InputKind.AUDIO: preprocess_audio,
    InputKind.VIDEO: preprocess_video,
    InputKind.DEPTH: preprocess_depth,
    InputKind.THERMAL: preprocess_thermal,
    InputKind.IMU: preprocess_imu,
}


def check_item(kind: InputKind, item: object, options: PreprocessOptions) -> None:
    """The checks that need no decoding (type and size), so a pool can run them before the bytes travel."""
    if kind is not InputKind.TEXT:
        if not isinstance(item, bytes | bytearray | memoryview):
            raise InputError(f"{kind.value} input must be bytes", reason="invalid")
        if len(item) > options.limits.max_item_bytes:
            raise InputError(f"{kind.value} input is {len(item)} bytes, over the limit of "
                             f"{options.limits.max_item_bytes}", reason="too_large")


def preprocess(kind: InputKind, item: bytes | str, options: PreprocessOptions, *,
               stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """One item -> (clips, ...) tensor. Unexpected failures inside decoders become InputError too:
    a bad upload must never surface as a server fault, nor pass a library's internals to the user.
    `stop` lets text tokenizing be abandoned between words (media is stopped with its process)."""
    check_item(kind, item, options)
    try:
        if kind is InputKind.TEXT:
            return preprocess_text(item, options, stop)
        return PREPROCESSORS[kind](bytes(item) if not isinstance(item, str) else item, options)
    except (InputError, DeadlineExceededError):
        raise
    except (MemoryError, RecursionError) as exc:
        raise InputError(f"{kind.value} input is too complex to decode: it needs more memory or nesting than "
                         "a decoder may use", reason="too_large") from exc
    except Exception as exc:
        raise InputError(f"cannot decode {kind.value} input: the decoder failed on it ({type(exc).__name__})",
                         reason="decode") from exc
