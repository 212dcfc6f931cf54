"""How the tests' tiny checkpoint gets weights that tell inputs apart (see `discriminative_init`)."""

from __future__ import annotations

import torch

#: Gains of the discriminative initialisation (see `discriminative_init`): std = gain / sqrt(fan_in)
#: for the query/key projections, every other matrix (values, attention output, MLP, heads) and the
#: stems' patch projections; positional and token embeddings get a plain std.
QK_GAIN, MATRIX_GAIN, STEM_GAIN, EMBEDDING_STD = 2.0, 1.5, 1.0, 0.5
TINY_SEED = 7


def discriminative_init(model: torch.nn.Module, seed: int) -> None:
    """Re-draw the weight matrices of a `random_model` so that its outputs depend on the input.

    Why: the plain init (std 0.02 everywhere) leaves every residual branch far smaller than the
    stream it adds to and the attention uniform, so the token the head reads is nearly the constant
    class/positional embedding: two different pictures gave cosine 0.9999963, two videos 0.9999948,
    and parity by cosine could not fail. How: fan-in scaled normals (unit-gain layers) for values,
    attention outputs, MLPs, heads and stems; query/key at twice that, so attention picks tokens by
    content and position instead of averaging them all (at unit gain IMU recordings that differ
    only in order embedded identically); positional and token embeddings comparable to the tokens.
    The same gain amplifies rounding: at query/key gain 3 bf16 fell to cosine 0.997 to float32, at
    2 it stays within `REDUCED_PRECISION` (tests/helpers.py). Biases, LayerNorms, class tokens and
    the learned bias key/values keep the plain init. tests/model/test_discriminative_model.py checks
    the spread this gives."""
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("pos_embed", "token_embedding.weight")):
                param.normal_(0.0, EMBEDDING_STD, generator=generator)
            elif param.ndim >= 2 and not name.endswith(("cls_token", "bias_k", "bias_v")):
                std = (STEM_GAIN if ".stem." in name else MATRIX_GAIN) / param[0].numel() ** 0.5
                param.normal_(0.0, std, generator=generator)
                if name.endswith("attn.in_proj_weight"):  # rows: query, key, value
                    query_key = 2 * param.shape[1]
                    param[:query_key].normal_(0.0, QK_GAIN / param.shape[1] ** 0.5, generator=generator)
