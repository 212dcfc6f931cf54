"""What every modality encoder shares: stem -> trunk -> head, then L2-normalise and scale.

Each encoder declares how its parameter names map to the official checkpoint's key names
(`official_prefixes`), so loading is a table lookup with no per-key code."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imagebind_vectorizer.model.layers import LogitScale


class Encoder(nn.Module):
    #: official modality key ("vision", "text", ...)
    modality: str = ""

    def __init__(self, scale: float | None) -> None:
        super().__init__()
        # The official vision encoder only normalises; every other modality also scales.
        self.logit_scale = LogitScale(scale) if scale is not None else None

    def official_prefixes(self) -> list[tuple[str, str]]:
        """(own name prefix, official key prefix) pairs; the longest matching prefix wins."""
        raise NotImplementedError

    def project(self, x: Tensor) -> Tensor:
        """Model input for N forwards -> (N, out_dim) head output, before normalisation."""
        raise NotImplementedError

    def scale_value(self) -> Tensor:
        return self.logit_scale.value() if self.logit_scale is not None else torch.tensor(1.0)

    def forward(self, x: Tensor) -> Tensor:
        """(N, out_dim) float32 embeddings exactly as the official postprocessor returns them:
        unit length times the modality's scale. Normalisation runs in float32 whatever the
        compute dtype, as the reference does."""
        out = F.normalize(self.project(x).float(), dim=-1)
        if self.logit_scale is not None:
            out = out * self.logit_scale.value().to(out.device)
        return out


def official_postprocessor_prefixes(modality: str) -> list[tuple[str, str]]:
    return [("logit_scale.", f"modality_postprocessors.{modality}.1.")]


class ConvPatchEncoder(Encoder):
    """One-channel 2-D input -> conv patches -> trunk with bias key/value -> class-token head.
    Audio (spectrograms), depth and thermal share this shape and differ only in sizes."""

    stem_name = "rgbt_stem"  # what the official checkpoint calls this modality's stem

    def __init__(self, *, dim: int, blocks: int, heads: int, kernel: int, stride: int,
                 grid: tuple[int, int], out_dim: int, scale: float) -> None:
        from imagebind_vectorizer.model.layers import ClsHead, ConvPatchStem, Trunk

        super().__init__(scale=scale)
        self.stem = ConvPatchStem(dim, kernel, stride, grid[0] * grid[1])
        self.trunk = Trunk(dim, blocks, heads, bias_kv=True)
        self.head = ClsHead(dim, out_dim)

    def project(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(self.stem(x)))

    def official_prefixes(self) -> list[tuple[str, str]]:
        m = self.modality
        pre = f"modality_preprocessors.{m}."
        return [
            ("stem.proj.", f"{pre}{self.stem_name}.proj."),
            ("stem.norm.", f"{pre}{self.stem_name}.norm_layer."),
            ("stem.cls_token", pre + "cls_token"),
            ("stem.pos_embed", pre + "pos_embedding_helper.pos_embed"),
            ("trunk.blocks.", f"modality_trunks.{m}.blocks."),
            ("head.norm.", f"modality_heads.{m}.0."),
            ("head.proj.", f"modality_heads.{m}.2."),
            *official_postprocessor_prefixes(m),
        ]
