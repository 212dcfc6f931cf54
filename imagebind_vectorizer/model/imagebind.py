"""ImageBind assembled from the encoders a deployment enables."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from imagebind_vectorizer.kinds import ENCODERS
from imagebind_vectorizer.model.audio import AudioEncoder
from imagebind_vectorizer.model.config import ImageBindConfig
from imagebind_vectorizer.model.depth import DepthEncoder
from imagebind_vectorizer.model.encoder import Encoder, EncoderForward
from imagebind_vectorizer.model.imu import ImuEncoder
from imagebind_vectorizer.model.layers import init_weights
from imagebind_vectorizer.model.text import TextEncoder
from imagebind_vectorizer.model.thermal import ThermalEncoder
from imagebind_vectorizer.model.vision import VisionEncoder

ENCODER_CLASSES: dict[str, type[Encoder]] = {
    "vision": VisionEncoder,
    "text": TextEncoder,
    "audio": AudioEncoder,
    "depth": DepthEncoder,
    "thermal": ThermalEncoder,
    "imu": ImuEncoder,
}


class ImageBind(nn.Module):
    """Only the enabled encoders exist, so a text+image deployment holds no audio/IMU weights."""

    def __init__(self, config: ImageBindConfig, encoders: tuple[str, ...] = ENCODERS) -> None:
        super().__init__()
        unknown = set(encoders) - set(ENCODER_CLASSES)
        if unknown:
            raise ValueError(f"unknown encoders {sorted(unknown)}")
        self.config = config
        self.encoders = nn.ModuleDict({name: ENCODER_CLASSES[name](config) for name in ENCODERS
                                       if name in encoders})

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(self.encoders.keys())

    def forward(self, modality: str, x: Tensor) -> Tensor:
        """One forward per row of x -> (N, out_dim) float32, normalised and scaled as the official
        postprocessor does. Averaging a multi-clip input's rows is the caller's job (`average_clips`)."""
        return self.encoders[modality](x)

    def start(self, modality: str, x: Tensor) -> EncoderForward:
        """`forward(modality, x)` as a sequence of steps that can be paused and resumed."""
        return self.encoders[modality].start(x)

    # Checkpoint key mapping -------------------------------------------------------------------
    def official_key_map(self) -> dict[str, str]:
        """own state-dict key -> official checkpoint key, for every enabled encoder."""
        mapping: dict[str, str] = {}
        for name, encoder in self.encoders.items():
            prefixes = sorted(encoder.official_prefixes(), key=lambda p: -len(p[0]))
            for key in encoder.state_dict(keep_vars=True):
                for own, official in prefixes:
                    if key.startswith(own):
                        mapping[f"encoders.{name}.{key}"] = official + key[len(own):]
                        break
                else:  # a programming error, caught by the key-layout tests
                    raise KeyError(f"no official name for {name}.{key}")
        return mapping

    def official_state_dict(self) -> dict[str, Tensor]:
        """This model's weights under the official key names (what `imagebind_huge.pth` holds)."""
        own = self.state_dict()
        return {official: own[key] for key, official in self.official_key_map().items()}


def average_clips(per_clip: Tensor, counts: list[int]) -> Tensor:
    """Mean of each item's consecutive rows (audio: 3 clips, video: 15 views); items with one row
    pass through unchanged. The official model averages after scaling, so do we."""
    if all(c == 1 for c in counts):
        return per_clip
    return torch.stack([chunk.mean(dim=0) for chunk in per_clip.split(counts)])


def random_model(config: ImageBindConfig, encoders: tuple[str, ...] = ENCODERS,
                 seed: int = 0) -> ImageBind:
    """A model with random weights, for tests and benchmarks of the real architecture."""
    model = ImageBind(config, encoders)
    init_weights(model, torch.Generator().manual_seed(seed))
    return model.eval()
