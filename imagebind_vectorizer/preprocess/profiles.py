"""The two preprocessing profiles, and every limit an input must respect, in one place.

`official` follows the current official ImageBind repository (and, for depth/thermal/IMU, which it
has no loaders for, the recipes documented in the README). `weaviate-legacy` reproduces, vector for
vector, what Weaviate's `multi2vec-bind-inference` container computes, quirks included, so
collections it vectorized keep working without re-vectorizing."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Profile(StrEnum):
    OFFICIAL = "official"
    WEAVIATE_LEGACY = "weaviate-legacy"


@dataclass(frozen=True)
class Behaviour:
    #: text: keep the end-of-text token for long texts (official since 2025-11-21) or lose it
    #: past 75 BPE tokens (old tokenizer: every long text then embeds identically)
    text_keeps_eot: bool
    #: audio/video clip starts are k * max_start / divisor with divisor = clips - 1 (the
    #: pytorchvideo commit ImageBind pins) or clips (pytorchvideo 0.1.5 in the container)
    clip_spacing_minus_one: bool
    #: video frames chosen by frame index as decord does (official) or by pts as pytorchvideo
    #: 0.1.5's PyAV decoder does (container)
    video_frames_by_index: bool
    #: 16-bit depth PNGs are metric depth converted to disparity (official) or clipped to 8-bit
    #: grayscale like every other image (container)
    depth_16bit_as_metric: bool
    #: 16-bit thermal images are rescaled to 8 bits over their own range (official) or clipped
    #: by PIL's conversion (container)
    thermal_16bit_rescaled: bool
    #: IMU CSV columns are mapped by header name and transposed (official) or the N x 6 table is
    #: reshaped to 6 x N (container; it interleaves samples of different sensors)
    imu_by_name: bool


BEHAVIOURS: dict[Profile, Behaviour] = {
    Profile.OFFICIAL: Behaviour(
        text_keeps_eot=True, clip_spacing_minus_one=True, video_frames_by_index=True,
        depth_16bit_as_metric=True, thermal_16bit_rescaled=True, imu_by_name=True,
    ),
    Profile.WEAVIATE_LEGACY: Behaviour(
        text_keeps_eot=False, clip_spacing_minus_one=False, video_frames_by_index=False,
        depth_16bit_as_metric=False, thermal_16bit_rescaled=False, imu_by_name=False,
    ),
}


@dataclass(frozen=True)
class Limits:
    """Bounds on every input path; anything beyond is rejected with a clear error, never decoded
    into unbounded memory."""

    max_item_bytes: int = 64 * 1024 * 1024
    max_text_chars: int = 100_000
    #: BPE time grows with the square of a word's length; no natural word comes near this
    max_text_word_bytes: int = 4096
    #: BPE merge steps (symbols scanned) one text may take for its first 77 tokens: a normal text
    #: needs a few thousand; this much is about 0.2 s of CPU
    max_text_bpe_work: int = 600_000
    max_image_pixels: int = 40_000_000
    #: a 1 x 10000 strip would otherwise be resized to 224 x 2,240,000
    max_image_aspect_ratio: float = 50.0
    max_audio_seconds: float = 600.0
    max_video_seconds: float = 600.0
    max_video_frame_pixels: int = 8_294_400  # 3840 x 2160
    max_imu_samples: int = 200_000


@dataclass(frozen=True)
class DepthOptions:
    """Metric depth (16-bit PNG) -> disparity, after Omnivore/ImageBind (see README)."""

    units_per_meter: float = 1000.0  # 16-bit depth PNGs usually store millimetres
    baseline_m: float = 0.075  # Kinect v1/v2
    focal_px: float = 518.857901  # NYU-v2 Kinect fx
    min_depth_m: float = 0.01
    max_depth_m: float = 50.0
    max_disparity_px: float = 75.0  # Omnivore's DepthNorm: clamp, then scale to [0, 1]


IMU_DEFAULT_CHANNELS = ("gyro_x", "gyro_y", "gyro_z", "accl_x", "accl_y", "accl_z")


@dataclass(frozen=True)
class PreprocessOptions:
    profile: Profile = Profile.OFFICIAL
    limits: Limits = field(default_factory=Limits)
    depth: DepthOptions = field(default_factory=DepthOptions)
    #: apply the EXIF orientation tag. Off by default: the official loader ignores it, and the
    #: promise is the official model's vector for the same bytes.
    exif_transpose: bool = False
    #: IMU channel order fed to the model (Ego4D's column order by default)
    imu_channels: tuple[str, ...] = IMU_DEFAULT_CHANNELS

    @property
    def behaviour(self) -> Behaviour:
        return BEHAVIOURS[self.profile]
