"""Depth encoder: a small ViT over one-channel (1, 224, 224) disparity/depth images."""

from __future__ import annotations

from imagebind_vectorizer.kinds import IMAGE_SIZE
from imagebind_vectorizer.model.config import ImageBindConfig
from imagebind_vectorizer.model.encoder import ConvPatchEncoder

DEPTH_SCALE = 5.0


class DepthEncoder(ConvPatchEncoder):
    modality = "depth"
    stem_name = "depth_stem"

    def __init__(self, config: ImageBindConfig) -> None:
        k = config.depth_kernel_size
        super().__init__(dim=config.depth_embed_dim, blocks=config.depth_num_blocks,
                         heads=config.depth_num_heads, kernel=k, stride=k,
                         grid=(IMAGE_SIZE // k, IMAGE_SIZE // k),
                         out_dim=config.out_embed_dim, scale=DEPTH_SCALE)
