"""Vision encoder (images and video clips): a ViT whose stem is a Conv3d over 2-frame clips."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imagebind_vectorizer.model.config import ImageBindConfig
from imagebind_vectorizer.model.encoder import Encoder
from imagebind_vectorizer.model.layers import ClsHead, Trunk


class VisionStem(nn.Module):
    def __init__(self, config: ImageBindConfig) -> None:
        super().__init__()
        dim = config.vision_embed_dim
        self.kernel_size = config.kernel_size
        self.weight = nn.Parameter(torch.empty(dim, 3, *config.kernel_size))
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, config.vision_patches + 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4:
            # An image is the official model's 2-frame clip of one repeated frame. Convolving the
            # repeat with the (2, p, p) kernel equals a 2-D convolution with the kernel summed
            # over time, at half the cost and without materialising the repeat.
            frames = self.kernel_size[0]
            kernel = self.weight.sum(dim=2) if frames > 1 else self.weight[:, :, 0]
            patches = F.conv2d(x, kernel, stride=self.kernel_size[1:])
        else:
            patches = F.conv3d(x, self.weight, stride=self.kernel_size)
        tokens = patches.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed


class VisionEncoder(Encoder):
    modality = "vision"

    def __init__(self, config: ImageBindConfig) -> None:
        super().__init__(scale=None)
        dim = config.vision_embed_dim
        self.stem = VisionStem(config)
        self.trunk = Trunk(dim, config.vision_num_blocks, config.vision_num_heads, bias_kv=False,
                           pre_norm=True)
        self.head = ClsHead(dim, config.out_embed_dim)

    def tokens(self, x: Tensor) -> tuple[Tensor, Any]:
        """x: (N, 3, 224, 224) images or (N, 3, T, 224, 224) clips."""
        return self.stem(x), None

    def pool(self, tokens: Tensor, context: Any) -> Tensor:
        return self.head(tokens)

    def official_prefixes(self) -> list[tuple[str, str]]:
        pre, trunk, head = ("modality_preprocessors.vision.", "modality_trunks.vision.",
                            "modality_heads.vision.")
        return [
            ("stem.weight", pre + "rgbt_stem.proj.1.weight"),  # index 0 is the param-free PadIm2Video
            ("stem.cls_token", pre + "cls_token"),
            ("stem.pos_embed", pre + "pos_embedding_helper.pos_embed"),
            ("trunk.pre_norm.", trunk + "pre_transformer_layer.0."),
            ("trunk.blocks.", trunk + "blocks."),
            ("head.norm.", head + "0."),
            ("head.proj.", head + "2."),
        ]
