"""The stepwise forward (stem, each block, head) that the engine pauses between steps: whatever
runs in between, the result is bit-identical to the plain forward."""

from __future__ import annotations

import pytest
import torch

from imagebind_vectorizer.model.imagebind import ImageBind
from tests.model.test_model_parity import random_ids


def model_input(modality: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return {
        "vision": lambda: torch.randn(2, 3, 224, 224, generator=g),
        "text": lambda: random_ids(g, [3, 9, None]),
        "audio": lambda: torch.randn(2, 1, 128, 204, generator=g),
        "depth": lambda: torch.randn(2, 1, 224, 224, generator=g),
        "thermal": lambda: torch.randn(2, 1, 224, 224, generator=g),
        "imu": lambda: torch.randn(2, 6, 2000, generator=g),
    }[modality]()


@pytest.mark.parametrize("modality", ["vision", "text", "audio", "depth", "thermal", "imu"])
def test_a_paused_forward_resumes_to_the_plain_result_bit_for_bit(tiny_model: ImageBind, modality: str) -> None:
    x = model_input(modality, 1)
    text = model_input("text", 2)
    clip = torch.randn(1, 3, 2, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        plain = tiny_model(modality, x)
        paused = tiny_model.start(modality, x)
        assert paused.steps == len(tiny_model.encoders[modality].trunk.blocks) + 2
        while not paused.done:
            paused.step()
            # between two steps: a whole text forward, and a vision forward paused half-way (the
            # same encoder as `paused` for images), as the engine interleaves them
            tiny_model("text", text)
            same = tiny_model.start("vision", clip)
            same.step()
            same.step()
        assert torch.equal(paused.result(), plain)


def test_the_result_exists_only_once_every_step_ran(tiny_model: ImageBind) -> None:
    ids = random_ids(torch.Generator().manual_seed(4), [5])
    with torch.inference_mode():
        forward = tiny_model.start("text", ids)
        forward.step()
        with pytest.raises(RuntimeError, match="step 1 of"):
            forward.result()
        vector = forward.run()
        assert forward.done and torch.equal(vector, tiny_model("text", ids))
        with pytest.raises(RuntimeError, match="already finished"):
            forward.step()
