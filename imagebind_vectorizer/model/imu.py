"""IMU encoder: six channels x 2000 samples cut into 250 windows of 8 samples (48 features each)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from imagebind_vectorizer.kinds import IMU_CHANNELS, IMU_SAMPLES
from imagebind_vectorizer.model.config import IMU_PATCH, ImageBindConfig
from imagebind_vectorizer.model.encoder import Encoder, official_postprocessor_prefixes
from imagebind_vectorizer.model.layers import STEM_LN_EPS, ClsHead, Trunk

IMU_SCALE = 5.0


class ImuStem(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(IMU_CHANNELS * IMU_PATCH, dim, bias=False)
        self.norm = nn.LayerNorm(dim, eps=STEM_LN_EPS)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, IMU_SAMPLES // IMU_PATCH + 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        # (N, 6, 2000) -> (N, 250 windows, 6 channels x 8 steps): feature index = channel * 8 + step.
        n = x.shape[0]
        windows = x.unfold(-1, IMU_PATCH, IMU_PATCH).permute(0, 2, 1, 3).reshape(n, -1, IMU_CHANNELS * IMU_PATCH)
        tokens = self.norm(self.proj(windows))
        return torch.cat([self.cls_token.expand(n, -1, -1), tokens], dim=1) + self.pos_embed


class ImuEncoder(Encoder):
    modality = "imu"

    def __init__(self, config: ImageBindConfig) -> None:
        super().__init__(scale=IMU_SCALE)
        dim = config.imu_embed_dim
        self.stem = ImuStem(dim)
        self.trunk = Trunk(dim, config.imu_num_blocks, config.imu_num_heads, bias_kv=True)
        self.head = ClsHead(dim, config.out_embed_dim)  # the official Dropout(0.5) is inert in eval

    def tokens(self, x: Tensor) -> tuple[Tensor, Any]:
        return self.stem(x), None

    def pool(self, tokens: Tensor, context: Any) -> Tensor:
        return self.head(tokens)

    def official_prefixes(self) -> list[tuple[str, str]]:
        pre = "modality_preprocessors.imu."
        return [
            ("stem.proj.", pre + "imu_stem.proj."),
            ("stem.norm.", pre + "imu_stem.norm_layer."),
            ("stem.cls_token", pre + "cls_token"),
            ("stem.pos_embed", pre + "pos_embed"),
            ("trunk.blocks.", "modality_trunks.imu.blocks."),
            ("head.norm.", "modality_heads.imu.0."),
            ("head.proj.", "modality_heads.imu.3."),  # index 2 is the Dropout
            *official_postprocessor_prefixes("imu"),
        ]
