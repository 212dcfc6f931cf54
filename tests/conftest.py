"""Shared fixtures: a tiny architecture and checkpoints in the official format, generated here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.modality import ENCODERS
from imagebind_vectorizer.model.checkpoint import save_official_checkpoint
from imagebind_vectorizer.model.config import config_from_dict
from imagebind_vectorizer.model.imagebind import random_model
from imagebind_vectorizer.settings import Settings

#: Official ImageBindModel arguments for a model small enough for CPU tests.
TINY_ARCHITECTURE = {
    "out_embed_dim": 32,
    "vision_embed_dim": 32, "vision_num_blocks": 2, "vision_num_heads": 2,
    "text_embed_dim": 32, "text_num_blocks": 2, "text_num_heads": 2,
    "audio_embed_dim": 32, "audio_num_blocks": 2, "audio_num_heads": 2,
    "depth_embed_dim": 32, "depth_num_blocks": 2, "depth_num_heads": 4,
    "thermal_embed_dim": 32, "thermal_num_blocks": 2, "thermal_num_heads": 2,
    "imu_embed_dim": 32, "imu_num_blocks": 2, "imu_num_heads": 2,
}
TINY_DIM = TINY_ARCHITECTURE["out_embed_dim"]


@pytest.fixture(scope="session")
def tiny_config():
    return config_from_dict(TINY_ARCHITECTURE, name="tiny")


@pytest.fixture(scope="session")
def tiny_config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(json.dumps(TINY_ARCHITECTURE))
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_config) -> Path:
    """Random weights for all six encoders, saved under the official key names."""
    path = tmp_path_factory.mktemp("checkpoint") / "imagebind_tiny.pth"
    model = random_model(tiny_config, ENCODERS, seed=7)
    with torch.no_grad():  # a learned text scale that is not the init value, as in a trained model
        model.encoders["text"].logit_scale.log_logit_scale.fill_(4.2)
    save_official_checkpoint(model, path)
    return path


@pytest.fixture(scope="session")
def tiny_settings(tiny_config_path: Path, tiny_checkpoint: Path) -> Settings:
    # float32 explicitly: `--dtype auto` may pick bfloat16 on a CPU with AMX, and parity needs float32
    return Settings.load(env={}, checkpoint=str(tiny_checkpoint), model_config=str(tiny_config_path), dtype="float32")


@pytest.fixture(scope="session")
def tiny_embedder(tiny_settings: Settings):
    from imagebind_vectorizer.embedder import Embedder

    return Embedder(tiny_settings, progress=False)


# The official code as a test oracle ----------------------------------------------------------
@pytest.fixture(scope="session")
def ref():
    """The official ImageBind code (PyPI `imagebind-unofficial`) with its shims."""
    from tests.reference import official

    return official.load()


@pytest.fixture(scope="session")
def ref_tiny_model(ref, tiny_config, tiny_checkpoint: Path):
    """The official `ImageBindModel` with the session's tiny weights, loaded strictly."""
    model = ref.model.ImageBindModel(**tiny_config.official_kwargs())
    model.load_state_dict(torch.load(tiny_checkpoint, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model(tiny_config, tiny_checkpoint: Path):
    from imagebind_vectorizer.model.checkpoint import load_model

    return load_model(tiny_checkpoint, tiny_config)


@pytest.fixture(scope="session")
def make_embedder(tiny_settings: Settings):
    """Embedders over the tiny checkpoint with some settings changed, built once per setting."""
    from imagebind_vectorizer.embedder import Embedder

    cache: dict[tuple, Embedder] = {}

    def make(**changes: object) -> Embedder:
        key = tuple(sorted(changes.items()))
        if key not in cache:
            cache[key] = Embedder(tiny_settings.replace(**changes), progress=False)
        return cache[key]

    return make


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """Print the largest differences measured against the reference, per comparison."""
    from tests.helpers import MEASURED

    if not MEASURED:
        return
    terminalreporter.section("measured differences vs the reference")
    for label in sorted(MEASURED):
        entry = MEASURED[label]
        cos = f"  min cosine {entry['min_cos']:.9f}" if "min_cos" in entry else ""
        terminalreporter.write_line(f"{label:32s} max abs {entry['max_abs']:.3g}{cos}  ({entry['count']} comparisons)")
