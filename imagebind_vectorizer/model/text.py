"""Text encoder: the OpenCLIP ViT-H text transformer (causal), pooled at the end-of-text token."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from imagebind_vectorizer.kinds import TEXT_CONTEXT_LENGTH
from imagebind_vectorizer.model.config import TEXT_VOCAB_SIZE, ImageBindConfig
from imagebind_vectorizer.model.encoder import Encoder, official_postprocessor_prefixes
from imagebind_vectorizer.model.layers import TRUNK_LN_EPS, Trunk

#: Init value of the learned text scale (1/0.07); checkpoints overwrite it.
TEXT_SCALE_INIT = 1 / 0.07


class TextStem(nn.Module):
    def __init__(self, config: ImageBindConfig) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(TEXT_VOCAB_SIZE, config.text_embed_dim)
        self.pos_embed = nn.Parameter(torch.empty(1, TEXT_CONTEXT_LENGTH, config.text_embed_dim))
        # The official checkpoint stores its causal mask as a persistent buffer; we keep it only
        # so state dicts round-trip (attention uses SDPA's built-in causal mask).
        mask = torch.full((TEXT_CONTEXT_LENGTH, TEXT_CONTEXT_LENGTH), float("-inf")).triu_(1)
        self.register_buffer("mask", mask)

    def forward(self, ids: Tensor) -> Tensor:
        return self.token_embedding(ids) + self.pos_embed[:, : ids.shape[1]]


class TextHead(nn.Module):
    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=TRUNK_LN_EPS)
        self.proj = nn.Linear(dim, out_dim, bias=False)

    def forward(self, tokens: Tensor, pool_at: Tensor) -> Tensor:
        picked = tokens[torch.arange(tokens.shape[0], device=tokens.device), pool_at]
        return self.proj(self.norm(picked))


class TextEncoder(Encoder):
    modality = "text"
    causal = True

    def __init__(self, config: ImageBindConfig) -> None:
        super().__init__(scale=TEXT_SCALE_INIT)
        dim = config.text_embed_dim
        self.stem = TextStem(config)
        self.trunk = Trunk(dim, config.text_num_blocks, config.text_num_heads, bias_kv=False)
        self.head = TextHead(dim, config.out_embed_dim)
        #: run only up to the batch's last end-of-text position (exact under the causal mask)
        self.trim = True

    def tokens(self, ids: Tensor) -> tuple[Tensor, Any]:
        """ids: (N, 77) int64. Pooled at argmax(ids) — the first end-of-text token, the largest id.

        Under the causal mask no position sees a later one, so the trunk only needs the columns up
        to the batch's last pooled position: cutting there is exact and makes short queries several
        times cheaper than running all 77 positions."""
        pool_at = ids.argmax(dim=-1)
        length = int(pool_at.max().item()) + 1 if self.trim else ids.shape[1]
        return self.stem(ids[:, :length]), pool_at

    def pool(self, tokens: Tensor, context: Any) -> Tensor:
        return self.head(tokens, context)

    def official_prefixes(self) -> list[tuple[str, str]]:
        pre = "modality_preprocessors.text."
        return [
            ("stem.", pre),
            ("trunk.blocks.", "modality_trunks.text.blocks."),
            ("head.norm.", "modality_heads.text.proj.0."),
            ("head.proj.", "modality_heads.text.proj.1."),
            *official_postprocessor_prefixes("text"),
        ]
