"""A preprocess function for decoder workers in tests: the real one, behind faults an input could
cause. Audio first goes through the conversion the server used before the fix (resample to planar
float, then PyAV's `to_ndarray()`), which still crashes with SIGSEGV on 8 or more channels: a real
fault in a real library. Images starting with a marker spin, grab memory or sleep."""

from __future__ import annotations

import io
import time

import av
import torch

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions
from imagebind_vectorizer.preprocess import preprocess as real_preprocess

SPIN = b"test:spin"
HOG = b"test:hog"
SLEEP = b"test:sleep"


def old_audio_conversion(data: bytes) -> None:
    with av.open(io.BytesIO(data)) as container:
        to_planar = av.AudioResampler(format="fltp")
        for frame in container.decode(container.streams.audio[0]):
            for converted in to_planar.resample(frame):
                converted.to_ndarray()


def preprocess(kind: InputKind, item: bytes | str, options: PreprocessOptions) -> torch.Tensor:
    if kind is InputKind.AUDIO and isinstance(item, bytes):
        old_audio_conversion(item)
    if kind is InputKind.IMAGE and isinstance(item, bytes):
        if item.startswith(SPIN):
            while True:
                pass
        if item.startswith(HOG):
            hoard = [bytearray(64 * 1024 * 1024) for _ in range(64)]  # 4 GiB, page by page
            del hoard
        if item.startswith(SLEEP):
            time.sleep(60)
    return real_preprocess(kind, item, options)
