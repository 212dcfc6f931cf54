"""Audio encoder: a ViT over (1, 128 mel bins, 204 frames) log-mel spectrogram clips, stride 10."""

from __future__ import annotations

from imagebind_vectorizer.model.config import ImageBindConfig
from imagebind_vectorizer.model.encoder import ConvPatchEncoder

AUDIO_SCALE = 20.0


class AudioEncoder(ConvPatchEncoder):
    modality = "audio"

    def __init__(self, config: ImageBindConfig) -> None:
        super().__init__(dim=config.audio_embed_dim, blocks=config.audio_num_blocks,
                         heads=config.audio_num_heads, kernel=config.audio_kernel_size,
                         stride=config.audio_stride, grid=config.audio_patch_grid,
                         out_dim=config.out_embed_dim, scale=AUDIO_SCALE)
