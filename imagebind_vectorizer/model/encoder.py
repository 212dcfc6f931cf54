"""What every modality encoder shares: stem -> trunk -> head, then L2-normalise and scale.

Each encoder declares how its parameter names map to the official checkpoint's key names
(`official_prefixes`), so loading is a table lookup with no per-key code.

A forward can also run as a sequence of steps (`Encoder.start`): the stem, each trunk block, the
head. Between two steps the caller may run anything else (the engine runs a cheap text batch
between two blocks of an image batch) and resume; the steps are exactly the operations of the
plain forward, so the result is bit-identical to it."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imagebind_vectorizer.model.layers import ClsHead, ConvPatchStem, LogitScale, Trunk


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

    #: every encoder has one; declared here for the stepwise forward
    trunk: Trunk
    #: text attends causally; every other modality sees all tokens
    causal: bool = False

    def tokens(self, x: Tensor) -> tuple[Tensor, Any]:
        """The stem: model input for N forwards -> (N, L, D) tokens, and whatever the head needs
        besides them (text: where to pool)."""
        raise NotImplementedError

    def pool(self, tokens: Tensor, context: Any) -> Tensor:
        """The head: (N, L, D) trunk output -> (N, out_dim), before normalisation."""
        raise NotImplementedError

    def project(self, x: Tensor) -> Tensor:
        """Model input for N forwards -> (N, out_dim) head output, before normalisation."""
        tokens, context = self.tokens(x)
        return self.pool(self.trunk(tokens, self.causal), context)

    def scale_value(self) -> Tensor:
        return self.logit_scale.value() if self.logit_scale is not None else torch.tensor(1.0)

    def postprocess(self, projected: Tensor) -> Tensor:
        """Unit length times the modality's scale, in float32 whatever the compute dtype, as the
        reference does."""
        out = F.normalize(projected.float(), dim=-1)
        if self.logit_scale is not None:
            out = out * self.logit_scale.value().to(out.device)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """(N, out_dim) float32 embeddings exactly as the official postprocessor returns them."""
        return self.postprocess(self.project(x))

    def start(self, x: Tensor) -> EncoderForward:
        """The same forward as `forward(x)`, to be run step by step."""
        return EncoderForward(self, x)


class EncoderForward:
    """One encoder forward paused between steps: stem, each trunk block, head (with the output
    scaling). It holds the activations between steps, so no work is ever repeated; run each step
    under the same grad mode as the plain forward would run."""

    def __init__(self, encoder: Encoder, x: Tensor) -> None:
        self.encoder = encoder
        self.steps = len(encoder.trunk.blocks) + 2
        self.done_steps = 0
        self._input: Tensor | None = x
        self._tokens: Tensor | None = None
        self._context: Any = None
        self._result: Tensor | None = None

    @property
    def done(self) -> bool:
        return self.done_steps == self.steps

    def step(self) -> None:
        """Run the next step."""
        encoder, index = self.encoder, self.done_steps
        if index == 0:
            assert self._input is not None
            tokens, self._context = encoder.tokens(self._input)
            self._input = None
            self._tokens = encoder.trunk.begin(tokens)
        elif index < self.steps - 1:
            self._tokens = encoder.trunk.blocks[index - 1](self._tokens, encoder.causal)
        elif index == self.steps - 1:
            self._result = encoder.postprocess(encoder.pool(self._tokens, self._context))
            self._tokens = self._context = None
        else:
            raise RuntimeError("the forward has already finished")
        self.done_steps += 1

    def result(self) -> Tensor:
        """(N, out_dim) float32, as `Encoder.forward` returns it; only once `done`."""
        if self._result is None:
            raise RuntimeError(f"the forward is at step {self.done_steps} of {self.steps}")
        return self._result

    def run(self) -> Tensor:
        """Every remaining step."""
        while not self.done:
            self.step()
        return self.result()


def official_postprocessor_prefixes(modality: str) -> list[tuple[str, str]]:
    return [("logit_scale.", f"modality_postprocessors.{modality}.1.")]


class ConvPatchEncoder(Encoder):
    """One-channel 2-D input -> conv patches -> trunk with bias key/value -> class-token head.
    Audio (spectrograms), depth and thermal share this shape and differ only in sizes."""

    stem_name = "rgbt_stem"  # what the official checkpoint calls this modality's stem

    def __init__(self, *, dim: int, blocks: int, heads: int, kernel: int, stride: int,
                 grid: tuple[int, int], out_dim: int, scale: float) -> None:
        super().__init__(scale=scale)
        self.stem = ConvPatchStem(dim, kernel, stride, grid[0] * grid[1])
        self.trunk = Trunk(dim, blocks, heads, bias_kv=True)
        self.head = ClsHead(dim, out_dim)

    def tokens(self, x: Tensor) -> tuple[Tensor, Any]:
        return self.stem(x), None

    def pool(self, tokens: Tensor, context: Any) -> Tensor:
        return self.head(tokens)

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
