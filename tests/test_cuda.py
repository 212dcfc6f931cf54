"""CUDA: the same vectors on the GPU as on the CPU, in every dtype, through the Embedder and the engine.

These run only where a CUDA device exists (the GPU check script, `scripts/gpu_check.sh`, runs them on
a lent GPU machine); CI has no GPU. The full-size precision comparison of fp16/bf16 against fp32 on
the `huge` architecture is in `scripts/gpu_check.py`, where the memory and time for it are available."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.kinds import InputKind
from tests import media
from tests.helpers import assert_reduced_precision_close

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]

ITEMS: dict[InputKind, list[bytes | str]] = {
    InputKind.TEXT: ["a dog barking", "rain on a window", "x " * 200],
    InputKind.IMAGE: [media.image_bytes("JPEG", 320, 240, seed=1), media.image_bytes("PNG", 200, 300, seed=2)],
    InputKind.AUDIO: [media.audio_bytes("wav", 3.0), media.audio_bytes("flac", 1.0, channels=2)],
    InputKind.VIDEO: [media.video_bytes(seconds=3.0)],
    InputKind.DEPTH: [media.depth_png_8bit(), media.depth_png_16bit_mm()],
    InputKind.THERMAL: [media.thermal_jpeg()],
    InputKind.IMU: [media.imu_csv(media.imu_samples())],
}
#: CUDA float32 against CPU float32: cuDNN runs float32 convolutions (the stems) in TF32 by default,
#: whose 10-bit mantissa is float16's, so the float16 bounds apply; not yet measured on a GPU (none
#: was lent while this was written): scripts/gpu_check.sh runs this file on one.
CUDA_FLOAT32 = torch.float16


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_vectors_match_cpu_float32(make_embedder, dtype: str) -> None:
    """Every kind through the Embedder on the GPU against the CPU in float32, on the discriminative
    test model, element by element (`REDUCED_PRECISION` in tests/helpers.py)."""
    cpu = make_embedder(output_scaling="official")
    gpu = make_embedder(output_scaling="official", device="cuda", dtype=dtype)
    bound = CUDA_FLOAT32 if dtype == "float32" else getattr(torch, dtype)
    for kind, items in ITEMS.items():
        assert_reduced_precision_close(gpu.embed(kind, items), cpu.embed(kind, items), dtype=bound,
                                       label=f"cuda {dtype} vs cpu float32", what=kind.value)


def test_engine_batches_on_cuda(tiny_settings) -> None:
    settings = tiny_settings.replace(device="cuda", dtype="bfloat16")

    async def run() -> dict[InputKind, list[np.ndarray]]:
        engine = Engine(settings)
        await engine.start()
        try:
            jobs = [engine.embed_request({kind: [item]}) for kind, items in ITEMS.items() for item in items]
            results = await asyncio.gather(*jobs)
        finally:
            await engine.close()
        out: dict[InputKind, list[np.ndarray]] = {}
        for result in results:
            for kind, vectors in result.items():
                out.setdefault(kind, []).extend(vectors)
        return out

    vectors = asyncio.run(run())
    for kind, items in ITEMS.items():
        assert len(vectors[kind]) == len(items)
        assert all(np.isfinite(v).all() and abs(np.linalg.norm(v) - 1) < 1e-3 for v in vectors[kind])
