"""Architecture configs. Field names and defaults are exactly those of the official
`ImageBindModel.__init__`, so a config written for the official code builds the same network here."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagebind_vectorizer.errors import ConfigError
from imagebind_vectorizer.kinds import IMAGE_SIZE

# Fixed by the official code (not constructor arguments); the input geometry is in kinds.py.
TEXT_VOCAB_SIZE = 49408
IMU_PATCH = 8  # the official IMU stem is hard-wired to 8-sample windows (Linear 48 -> D)


@dataclass(frozen=True)
class ImageBindConfig:
    video_frames: int = 2
    kernel_size: tuple[int, int, int] = (2, 14, 14)
    audio_kernel_size: int = 16
    audio_stride: int = 10
    out_embed_dim: int = 768
    vision_embed_dim: int = 1024
    vision_num_blocks: int = 24
    vision_num_heads: int = 16
    audio_embed_dim: int = 768
    audio_num_blocks: int = 12
    audio_num_heads: int = 12
    audio_num_mel_bins: int = 128
    audio_target_len: int = 204
    audio_drop_path: float = 0.1
    text_embed_dim: int = 768
    text_num_blocks: int = 12
    text_num_heads: int = 12
    depth_embed_dim: int = 384
    depth_kernel_size: int = 16
    depth_num_blocks: int = 12
    depth_num_heads: int = 8
    depth_drop_path: float = 0.0
    thermal_embed_dim: int = 768
    thermal_kernel_size: int = 16
    thermal_num_blocks: int = 12
    thermal_num_heads: int = 12
    thermal_drop_path: float = 0.0
    imu_embed_dim: int = 512
    imu_kernel_size: int = 8
    imu_num_blocks: int = 6
    imu_num_heads: int = 8
    imu_drop_path: float = 0.7
    # Not an official argument: the name shown in /meta. Excluded from `official_kwargs()`.
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        # Types first: JSON can hold anything, and a wrong type would otherwise surface as an
        # unrelated TypeError here or, worse, only when the model is built.
        type_problems = _type_problems(self)
        if type_problems:
            raise ConfigError("invalid architecture config: " + "; ".join(type_problems))
        object.__setattr__(self, "kernel_size", tuple(self.kernel_size))
        problems: list[str] = []
        if self.kernel_size[1] != self.kernel_size[2] or IMAGE_SIZE % self.kernel_size[1]:
            problems.append(f"kernel_size {self.kernel_size}: patches must be square and divide {IMAGE_SIZE}")
        elif self.video_frames % self.kernel_size[0]:
            problems.append("video_frames must be a multiple of kernel_size[0]")
        for modality in ("vision", "audio", "text", "depth", "thermal", "imu"):
            dim = getattr(self, f"{modality}_embed_dim")
            heads = getattr(self, f"{modality}_num_heads")
            if dim % heads:
                problems.append(f"{modality}_embed_dim ({dim}) must be a multiple of "
                                f"{modality}_num_heads ({heads})")
        for modality in ("depth", "thermal"):
            if IMAGE_SIZE % getattr(self, f"{modality}_kernel_size"):
                problems.append(f"{modality}_kernel_size must divide {IMAGE_SIZE}")
        if self.imu_kernel_size != IMU_PATCH:
            problems.append("imu_kernel_size: the official model ignores this argument and always uses "
                            f"{IMU_PATCH}-sample windows; only {IMU_PATCH} is supported")
        if self.audio_kernel_size > min(self.audio_num_mel_bins, self.audio_target_len):
            problems.append("audio_kernel_size is larger than the spectrogram")
        if problems:
            raise ConfigError("invalid architecture config: " + "; ".join(problems))

    # Derived geometry -------------------------------------------------------------------------
    @property
    def vision_patches(self) -> int:
        t, p, _ = self.kernel_size
        return (self.video_frames // t) * (IMAGE_SIZE // p) ** 2

    @property
    def audio_patch_grid(self) -> tuple[int, int]:
        k, s = self.audio_kernel_size, self.audio_stride
        return ((self.audio_num_mel_bins - k) // s + 1, (self.audio_target_len - k) // s + 1)

    def image_patches(self, kernel: int) -> int:
        return (IMAGE_SIZE // kernel) ** 2

    def official_kwargs(self) -> dict[str, Any]:
        """Arguments for the official `ImageBindModel(**kwargs)` (used by the parity tests)."""
        out = dataclasses.asdict(self)
        out.pop("name")
        return out

    def to_json(self) -> dict[str, Any]:
        out = self.official_kwargs()
        out["kernel_size"] = list(self.kernel_size)
        return out


_FIELDS = {f.name for f in dataclasses.fields(ImageBindConfig)} - {"name"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_problems(config: ImageBindConfig) -> list[str]:
    """Every field whose value has the wrong type or sign, named with the value it got. The
    defaults tell the types: ints are sizes (>= 1), floats are drop-path rates in [0, 1]."""
    problems = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "name":
            continue
        if f.name == "kernel_size":
            if not (isinstance(value, list | tuple) and len(value) == 3
                    and all(_is_int(k) and k >= 1 for k in value)):
                problems.append(f"kernel_size={value!r}: expected 3 positive integers (time, height, width)")
        elif isinstance(f.default, float):
            if not (isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1):
                problems.append(f"{f.name}={value!r}: expected a number between 0 and 1")
        elif not (_is_int(value) and value >= 1):
            problems.append(f"{f.name}={value!r}: expected a positive integer")
    return problems


#: The released model (`imagebind_huge`): its non-default constructor arguments.
PRESETS: dict[str, dict[str, Any]] = {
    "huge": dict(
        vision_embed_dim=1280, vision_num_blocks=32, vision_num_heads=16,
        text_embed_dim=1024, text_num_blocks=24, text_num_heads=16,
        out_embed_dim=1024, audio_drop_path=0.1, imu_drop_path=0.7,
    ),
}


def config_from_dict(values: dict[str, Any], name: str = "custom") -> ImageBindConfig:
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise ConfigError(f"unknown architecture fields {unknown}; valid fields are the official "
                          f"ImageBindModel arguments: {sorted(_FIELDS)}")
    try:
        return ImageBindConfig(**values, name=name)
    except TypeError as exc:
        raise ConfigError(f"invalid architecture config: {exc}") from exc


def load_config(spec: str | Path | ImageBindConfig) -> ImageBindConfig:
    """A preset name ("huge") or the path of a JSON file of official constructor arguments."""
    if isinstance(spec, ImageBindConfig):
        return spec
    text = str(spec)
    if text in PRESETS:
        return config_from_dict(PRESETS[text], name=text)
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"model config {text!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read model config {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"model config {path} must be a JSON object")
    return config_from_dict(values, name=path.stem)
