"""Compute rates: the model's analytic cost per input (imagebind_huge: per block 12·L·D² + 2·L·L_k·D
multiply-adds, plus stem and head) and a large matmul's measured FLOP/s on the same device and dtype,
the ceiling to compare against."""

from __future__ import annotations

import time

import torch

#: GFLOPs per input for imagebind_huge: image 1 forward at 257 tokens; text 1 forward at 77 tokens;
#: audio 3 clips; video 5 clips x 3 crops = 15 image forwards; depth, thermal, IMU 1 forward each.
GFLOPS_PER_ITEM = {"image": 335.0, "text": 47.1, "audio": 122.8, "video": 5025.0, "depth": 9.1, "thermal": 35.0,
                   "imu": 10.3}
#: imagebind_huge's text trunk: width and blocks (no bias_kv, so keys = tokens)
TEXT_WIDTH, TEXT_BLOCKS = 1024, 24


def text_gflops(tokens: int) -> float:
    """GFLOPs of one text forward at `tokens` tokens: per block 12*L*D^2 MACs (qkv, out-proj, MLP)
    plus 2*L*L*D (attention scores and weighted sum); FLOPs = 2 * MACs. 77 tokens give the 47.1 of
    the spec; a server that trims text batches at their last end-of-text token computes at the
    batch's longest text instead."""
    return 2 * TEXT_BLOCKS * (12 * tokens * TEXT_WIDTH**2 + 2 * tokens * tokens * TEXT_WIDTH) / 1e9


def text_tokens(texts: list[str]) -> int:
    """The most tokens (with start and end tokens) among `texts`: what a trimmed batch is cut at."""
    from imagebind_vectorizer.preprocess.text import get_tokenizer

    tokenizer = get_tokenizer()
    return max(int((tokenizer(text) != 0).sum()) for text in texts)


def matmul_gflops(dtype: torch.dtype, device: str, size: int | None = None, min_seconds: float = 2.0) -> float:
    """Sustained GFLOP/s of size x size @ size x size products (2*n^3 FLOPs each)."""
    dev = torch.device(device)
    n = size or (8192 if dev.type == "cuda" else 4096)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(2):  # warm-up (kernel selection, first-touch of the output)
        a @ b
    sync()
    reps, started = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        sync()
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and reps >= 3:
            return 2 * n**3 * reps / elapsed / 1e9
