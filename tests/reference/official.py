"""The official ImageBind code (PyPI `imagebind-unofficial`, file-for-file the official repository
at 53680b0) as a test oracle. It is installed for tests only, with `--no-deps`, and needs a few
shims for today's libraries; nothing here is used at run time.

`clip_spacing` selects the pytorchvideo clip sampler's behaviour: "official" is the commit that
ImageBind pins (starts k*max_start/(clips-1)); "legacy" is PyPI's pytorchvideo 0.1.5 unpatched
(k*max_start/clips), which Weaviate's container runs.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from fractions import Fraction

import pytest


def _install_shims() -> None:
    # pytorchvideo 0.1.5 imports a torchvision module that was renamed to a private one.
    if "torchvision.transforms.functional_tensor" not in sys.modules:
        import torchvision.transforms._functional_tensor as ft

        sys.modules["torchvision.transforms.functional_tensor"] = ft
    # imagebind.data imports pkg_resources only to locate its BPE file.
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            import importlib.resources

            shim = types.ModuleType("pkg_resources")
            shim.resource_filename = lambda pkg, name: str(importlib.resources.files(pkg) / name)  # type: ignore[attr-defined]
            sys.modules["pkg_resources"] = shim


def load() -> types.SimpleNamespace:
    """Import the reference, or skip the calling test when it is not installed."""
    try:
        _install_shims()
        from imagebind import data  # type: ignore[import-not-found]
        from imagebind.models import imagebind_model  # type: ignore[import-not-found]
        from pytorchvideo.data import clip_sampling, encoded_video  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - the make target always installs it
        pytest.fail(f"the reference ImageBind code is not installed ({exc}); run `make test`")
    return types.SimpleNamespace(data=data, model=imagebind_model, clip_sampling=clip_sampling,
                                 encoded_video=encoded_video)


@contextlib.contextmanager
def clip_spacing(mode: str) -> Iterator[None]:
    """Patch pytorchvideo's ConstantClipsPerVideoSampler to the official or the legacy spacing."""
    ref = load()
    sampler_cls = ref.clip_sampling.ConstantClipsPerVideoSampler
    original = sampler_cls.__call__
    if mode == "legacy":
        yield
        return

    def official_call(self, last_clip_time, video_duration, annotation):  # type: ignore[no-untyped-def]
        # The pinned pytorchvideo commit divides by (clips - 1): last clip ends at the end.
        max_start = Fraction(max(video_duration - self._clip_duration, 0))
        step = Fraction(max_start, max(self._clips_per_video - 1, 1))
        index = self._current_clip_index
        start = step * index
        self._current_clip_index += 1
        last = self._current_clip_index >= self._clips_per_video
        if last:
            self.reset()
        return ref.clip_sampling.ClipInfo(start, start + self._clip_duration, index, 0, last)

    sampler_cls.__call__ = official_call
    original_from_path = ref.encoded_video.EncodedVideo.from_path.__func__
    # The official loader passes sample_rate=..., which 0.1.5's from_path does not take.
    ref.encoded_video.EncodedVideo.from_path = classmethod(
        lambda cls, path, decode_audio=True, decoder="pyav", **_: original_from_path(cls, path, decode_audio, decoder))
    try:
        yield
    finally:
        sampler_cls.__call__ = original
        ref.encoded_video.EncodedVideo.from_path = classmethod(original_from_path)
