"""Building blocks shared by the six encoders: the pre-LN transformer trunk (attention through
`scaled_dot_product_attention`), token stems, heads and the output scaling.

Parameter names inside a block mirror `torch.nn.MultiheadAttention` and the official block
(`norm_1`, `attn.in_proj_weight`, `mlp.fc1`, ...) so that checkpoint keys map by prefix alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TRUNK_LN_EPS = 1e-6  # trunk blocks, the vision pre-LN and every head use 1e-6 ...
STEM_LN_EPS = 1e-5  # ... while the stems' LayerNorms keep PyTorch's default


class Attention(nn.Module):
    """Multi-head self-attention with optional learned bias key/value (one extra key and value
    appended after projection, never masked) and an optional causal mask."""

    def __init__(self, dim: int, num_heads: int, bias_kv: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        if bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, dim))
        else:
            self.bias_k = self.bias_v = None

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        batch, length, dim = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).split(dim, dim=-1)
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(batch, 1, dim)], dim=1)
            v = torch.cat([v, self.bias_v.expand(batch, 1, dim)], dim=1)
        heads, head_dim = self.num_heads, dim // self.num_heads
        q = q.view(batch, length, heads, head_dim).transpose(1, 2)
        k = k.view(batch, k.shape[1], heads, head_dim).transpose(1, 2)
        v = v.view(batch, v.shape[1], heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * ratio)
        self.fc2 = nn.Linear(dim * ratio, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as nn.GELU()


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm_1(x)), then x + mlp(norm_2(x)).

    Drop path exists only in training; this package is inference-only, so it has none."""

    def __init__(self, dim: int, num_heads: int, bias_kv: bool) -> None:
        super().__init__()
        self.norm_1 = nn.LayerNorm(dim, eps=TRUNK_LN_EPS)
        self.attn = Attention(dim, num_heads, bias_kv)
        self.norm_2 = nn.LayerNorm(dim, eps=TRUNK_LN_EPS)
        self.mlp = Mlp(dim)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        x = x + self.attn(self.norm_1(x), causal)
        return x + self.mlp(self.norm_2(x))


class Trunk(nn.Module):
    """A stack of blocks, optionally preceded by a LayerNorm (vision only). No final norm: the
    head's LayerNorm plays that role."""

    def __init__(self, dim: int, num_blocks: int, num_heads: int, *, bias_kv: bool,
                 pre_norm: bool = False) -> None:
        super().__init__()
        self.pre_norm = nn.LayerNorm(dim, eps=TRUNK_LN_EPS) if pre_norm else None
        self.blocks = nn.ModuleList(Block(dim, num_heads, bias_kv) for _ in range(num_blocks))

    def begin(self, x: Tensor) -> Tensor:
        """What runs before the first block (the stepwise forward calls it, then each block)."""
        return self.pre_norm(x) if self.pre_norm is not None else x

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        x = self.begin(x)
        for block in self.blocks:
            x = block(x, causal)
        return x


class ClsHead(nn.Module):
    """LayerNorm then a bias-free projection of the class token (token 0).

    The official head normalises every token and then selects token 0; LayerNorm works per token,
    so selecting first gives the same numbers for a fraction of the work."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=TRUNK_LN_EPS)
        self.proj = nn.Linear(dim, out_dim, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.proj(self.norm(tokens[:, 0]))


class ConvPatchStem(nn.Module):
    """Non-overlapping (or strided) patches of a one-channel 2-D input -> LayerNorm'd tokens,
    a learned class token and learned positional embeddings (audio, depth, thermal)."""

    def __init__(self, dim: int, kernel: int, stride: int, num_patches: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=kernel, stride=stride, bias=False)
        self.norm = nn.LayerNorm(dim, eps=STEM_LN_EPS)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, num_patches + 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.norm(self.proj(x).flatten(2).transpose(1, 2))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed


class LogitScale(nn.Module):
    """The official postprocessor's fixed (or learned, for text) scale: min(exp(s), max)."""

    def __init__(self, init: float, max_scale: float = 100.0) -> None:
        super().__init__()
        self.register_buffer("log_logit_scale", torch.tensor(math.log(init)))
        self.max_scale = max_scale

    def value(self) -> Tensor:
        # Always in float32: the official model runs in fp32, and rounding the scale to bf16
        # would turn 20 into 20.125.
        return self.log_logit_scale.float().exp().clamp(max=self.max_scale)


def init_weights(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Random weights (std 0.02) for tests and benchmarks; real use loads a checkpoint instead."""
    with torch.no_grad():
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                if isinstance(sub, nn.LayerNorm) and name == "weight":
                    param.normal_(1.0, 0.02, generator=generator)
                else:
                    param.normal_(0.0, 0.02, generator=generator)
