"""Video. The official profile against the official `load_and_transform_video_data` (decord, frames
by index, clip starts max_start/4); the legacy profile against what Weaviate's container runs
(pytorchvideo 0.1.5's EncodedVideo with its default PyAV decoder, frames by pts, max_start/5),
composed in `tests.helpers.legacy_video_oracle` from the library calls."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions, Profile, preprocess
from tests import media
from tests.helpers import (
    assert_tensors_match,
    assert_vectors_match,
    legacy_video_oracle,
    peak_rss_after,
    reference_embed,
    write,
)
from tests.reference.official import clip_spacing

X264_BFRAMES = {"preset": "fast", "bf": "3"}

# name -> (container format, codec, seconds, fps, width, height, encoder options)
CASES: dict[str, tuple[str, str, float, int | Fraction, int, int, dict[str, str] | None]] = {
    "mp4-1s": ("mp4", "libx264", 1, 10, 160, 120, None),
    "mp4-3s-bframes": ("mp4", "libx264", 3, 25, 160, 120, X264_BFRAMES),
    "mp4-3.5s-ntsc": ("mp4", "libx264", 3.5, Fraction(30000, 1001), 160, 120, None),
    "mp4-7s": ("mp4", "libx264", 7, 12, 160, 120, None),
    "mp4-portrait": ("mp4", "libx264", 2.5, 12, 120, 160, None),
    "webm-3s": ("webm", "libvpx-vp9", 3, 8, 160, 120, None),
    "webm-7s": ("webm", "libvpx-vp9", 7, 5, 160, 120, None),
    "mkv-1s": ("matroska", "libx264", 1, 15, 160, 120, None),
    "mkv-7s-bframes": ("matroska", "libx264", 7, 10, 160, 120, X264_BFRAMES),
    "avi-3s": ("avi", "mpeg4", 3, 10, 160, 120, None),
    "avi-7s": ("avi", "mpeg4", 7, 8, 176, 144, None),
}
EXTENSIONS = {"matroska": "mkv"}
#: vectors vs the reference model on the reference tensors (element difference per vector norm, and
#: norm ratio). Measured 0 (the same Conv3d on the same tensors); 1e-5 as for every model comparison,
#: room for other CPUs' kernels. One view of 15 left out moves the vector by 1e-2, a cosine by only 4e-4.
VECTOR_RTOL = 1e-5


@pytest.fixture(scope="module")
def videos() -> dict[str, bytes]:
    out = {}
    for seed, (name, (fmt, codec, seconds, fps, width, height, options)) in enumerate(sorted(CASES.items())):
        out[name] = media.video_bytes(seconds, fps, width, height, container=fmt, codec=codec, seed=seed,
                                      options=options)
    return out


@pytest.mark.reference
@pytest.mark.parametrize("name", sorted(CASES))
def test_official_profile_equals_the_official_loader(ref, ref_tiny_model, make_embedder, videos,
                                                     tmp_path: Path, name: str) -> None:
    data = videos[name]
    fmt = CASES[name][0]
    path = write(tmp_path, f"video.{EXTENSIONS.get(fmt, fmt)}", data)
    with clip_spacing("official"):
        reference = ref.data.load_and_transform_video_data([str(path)], "cpu")
    ours = preprocess(InputKind.VIDEO, data, PreprocessOptions())
    assert ours.shape == (15, 3, 2, 224, 224)
    assert_tensors_match(ours, reference[0], label="tensor video official", atol=1e-5, what=name)
    vector = make_embedder(output_scaling="official").embed("video", [data])
    assert_vectors_match(vector, reference_embed(ref_tiny_model, "vision", reference),
                         label="vectors video official", rtol=VECTOR_RTOL, what=name)


@pytest.mark.reference
@pytest.mark.parametrize("name", sorted(CASES))
def test_legacy_profile_equals_the_containers_loader(ref, ref_tiny_model, make_embedder, videos,
                                                     tmp_path: Path, name: str) -> None:
    data = videos[name]
    fmt = CASES[name][0]
    reference = legacy_video_oracle(ref, write(tmp_path, f"video.{EXTENSIONS.get(fmt, fmt)}", data))
    legacy = PreprocessOptions(profile=Profile.WEAVIATE_LEGACY)
    ours = preprocess(InputKind.VIDEO, data, legacy)
    assert_tensors_match(ours, reference, label="tensor video legacy", atol=1e-5, what=name)
    vector = make_embedder(output_scaling="official", preprocessing="weaviate-legacy").embed("video", [data])
    assert_vectors_match(vector, reference_embed(ref_tiny_model, "vision", reference[None]),
                         label="vectors video legacy", rtol=VECTOR_RTOL, what=name)
    seconds = CASES[name][2]
    official = preprocess(InputKind.VIDEO, data, PreprocessOptions())
    if seconds >= 3:  # the clip spacings differ once there is room to move the clips
        assert not torch.equal(ours, official), f"{name}: the profiles should pick different frames"


def test_views_are_clips_by_crops_in_order(videos) -> None:
    """15 views = clip 0 crops left/centre/right, clip 1 ..., each a 2-frame clip; crops of one clip
    overlap where the long side allows it."""
    views = preprocess(InputKind.VIDEO, videos["mp4-7s"], PreprocessOptions())
    # 160x120 scales to 298x224: crops start at 0, 37 and 74 along the width.
    left, centre, right = views[0], views[1], views[2]
    assert torch.equal(left[..., 37:], centre[..., :-37])
    assert torch.equal(centre[..., 37:], right[..., :-37])
    assert not torch.equal(views[0], views[3]), "clip 1 starts later than clip 0"
    assert not torch.equal(views[0, :, 0], views[0, :, 1]), "a clip holds its first and last frame"


LIVE_CASES = {"webm-live": ("webm", "libvpx-vp9", "webm"), "mkv-live": ("matroska", "libx264", "mkv")}


@pytest.mark.reference
@pytest.mark.parametrize("name", sorted(LIVE_CASES))
def test_streams_without_duration_or_frame_count(ref, tmp_path: Path, name: str) -> None:
    """Live-muxed Matroska/WebM headers hold neither a duration nor a frame count. pytorchvideo's
    PyAV path then decodes everything and takes the last pts (legacy); decord refuses to open such
    files, so the official profile counts the packets instead, and must give what the official
    loader gives for the same frames muxed with a header."""
    fmt, codec, ext = LIVE_CASES[name]
    live = media.video_bytes(4.5, 6, 160, 120, container=fmt, codec=codec, muxer_options={"live": "1"})
    with_header = media.video_bytes(4.5, 6, 160, 120, container=fmt, codec=codec)
    legacy = preprocess(InputKind.VIDEO, live, PreprocessOptions(profile=Profile.WEAVIATE_LEGACY))
    assert_tensors_match(legacy, legacy_video_oracle(ref, write(tmp_path, f"live.{ext}", live)),
                         label="tensor video legacy", atol=1e-5, what=name)
    with clip_spacing("official"):
        reference = ref.data.load_and_transform_video_data([str(write(tmp_path, f"plain.{ext}", with_header))], "cpu")
    assert_tensors_match(preprocess(InputKind.VIDEO, live, PreprocessOptions()), reference[0],
                         label="tensor video official", atol=1e-5, what=f"{name} vs the same frames with a header")


def test_a_long_video_decodes_in_memory_bounded_by_the_clips(tmp_path: Path) -> None:
    """Issue case: the weaviate-legacy profile kept every decoded frame; a 60 s 640x480 video used
    +850 MiB. Here 30 s of such frames (300, 138 MB decoded; +121 MiB the old way), with and without
    a duration in the header, in both profiles, may raise the peak by less than half of that: only
    the first and last frame of each clip are held."""
    warm_up = write(tmp_path, "warm.mp4", media.video_bytes(3, 10, 640, 480))
    with_duration = write(tmp_path, "long.mp4", media.long_video(30, fps=10, width=640, height=480))
    without = write(tmp_path, "long.mkv", media.long_video(30, fps=10, width=640, height=480,
                                                           muxer_options={"live": "1"}))
    runs = [("video", warm_up, "official"), ("video", warm_up, "weaviate-legacy")]
    runs += [("video", path, profile) for profile in ("official", "weaviate-legacy")
             for path in (with_duration, without)]
    peaks = peak_rss_after(runs)
    base = peaks[2]
    assert max(peaks) - base < 60, f"decoding 300 frames raised the peak RSS by {max(peaks) - base:.0f} MiB: {peaks}"
