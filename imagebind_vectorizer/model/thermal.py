"""Thermal encoder: a ViT over one-channel (1, 224, 224) thermal images."""

from __future__ import annotations

from imagebind_vectorizer.kinds import IMAGE_SIZE
from imagebind_vectorizer.model.config import ImageBindConfig
from imagebind_vectorizer.model.encoder import ConvPatchEncoder

THERMAL_SCALE = 10.0


class ThermalEncoder(ConvPatchEncoder):
    modality = "thermal"

    def __init__(self, config: ImageBindConfig) -> None:
        k = config.thermal_kernel_size
        super().__init__(dim=config.thermal_embed_dim, blocks=config.thermal_num_blocks,
                         heads=config.thermal_num_heads, kernel=k, stride=k,
                         grid=(IMAGE_SIZE // k, IMAGE_SIZE // k),
                         out_dim=config.out_embed_dim, scale=THERMAL_SCALE)
