"""Checkpoints: loading (official key names, mmap, no random init, clear errors). Fetching them is
the runtime's (tests/runtime/test_weights.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.errors import CheckpointError
from imagebind_vectorizer.kinds import ENCODERS
from imagebind_vectorizer.model.checkpoint import load_model, save_official_checkpoint
from imagebind_vectorizer.model.imagebind import random_model
from tests.helpers import assert_vectors_match, reference_embed


def sample_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(2, 77, dtype=torch.long)
    ids[:, 0] = 49406
    ids[:, 1:8] = torch.randint(1, 49406, (2, 7), generator=g)
    ids[0, 8] = ids[1, 5] = 49407
    return {
        "vision": torch.randn(2, 3, 224, 224, generator=g),
        "text": ids,
        "audio": torch.randn(2, 1, 128, 204, generator=g),
        "depth": torch.randn(2, 1, 224, 224, generator=g),
        "thermal": torch.randn(2, 1, 224, 224, generator=g),
        "imu": torch.randn(2, 6, 2000, generator=g),
    }


@pytest.fixture(scope="module")
def official_state(tiny_checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)


# Loading ----------------------------------------------------------------------------------------
def test_round_trip_through_the_official_format_is_exact(tmp_path: Path, tiny_config) -> None:
    original = random_model(tiny_config, ENCODERS, seed=3)
    path = tmp_path / "round_trip.pth"
    save_official_checkpoint(original, path)
    assert all(k.startswith("modality_") for k in torch.load(path, weights_only=True))
    loaded = load_model(path, tiny_config)
    with torch.no_grad():
        for modality, x in sample_inputs().items():
            assert torch.equal(loaded(modality, x), original(modality, x)), modality


@pytest.mark.reference
def test_a_checkpoint_saved_by_the_reference_model_loads(tmp_path: Path, ref, tiny_config) -> None:
    torch.manual_seed(21)
    reference = ref.model.ImageBindModel(**tiny_config.official_kwargs()).eval()
    path = tmp_path / "from_reference.pth"
    torch.save(reference.state_dict(), path)
    ours = load_model(path, tiny_config)
    with torch.no_grad():
        for modality, x in sample_inputs(1).items():
            assert_vectors_match(ours(modality, x), reference_embed(reference, modality, x),
                                 label="checkpoint from reference", rtol=1e-5, what=modality)


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == str(path.resolve()):
                low, high = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((low, high))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc to see memory maps")
def test_loading_memory_maps_the_file_and_never_initialises_weights(tmp_path: Path, tiny_config,
                                                                    tiny_checkpoint: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    touched: list[str] = []

    def recorder(original):  # type: ignore[no-untyped-def]
        def wrapped(tensor, *args, **kwargs):  # type: ignore[no-untyped-def]
            touched.append(str(tensor.device))
            return original(tensor, *args, **kwargs)
        return wrapped

    for name in ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_", "xavier_uniform_", "zeros_",
                 "ones_", "constant_"):
        monkeypatch.setattr(torch.nn.init, name, recorder(getattr(torch.nn.init, name)))
    for name in ("normal_", "uniform_"):
        monkeypatch.setattr(torch.Tensor, name, recorder(getattr(torch.Tensor, name)))

    path = tmp_path / "mapped.pth"
    path.write_bytes(tiny_checkpoint.read_bytes())
    model = load_model(path, tiny_config)
    # Module constructors run their init on meta tensors (free); nothing real may be initialised.
    assert touched and set(touched) == {"meta"}, f"random init ran on {sorted(set(touched) - {'meta'})}"
    assert not any(p.is_meta for p in model.parameters())

    ranges = _mapped_ranges(path)
    assert ranges, "the checkpoint file is not memory-mapped"
    weight = model.encoders["text"].stem.token_embedding.weight
    assert any(low <= weight.data_ptr() < high for low, high in ranges), (
        "float32 CPU weights should be the mapped file's pages, not a copy")


def test_missing_and_unexpected_keys_are_named(tmp_path: Path, tiny_config, official_state) -> None:
    state = dict(official_state)
    del state["modality_heads.vision.2.weight"]
    del state["modality_trunks.audio.blocks.1.attn.bias_k"]
    state["modality_trunks.vision.blocks.9.norm_1.weight"] = torch.zeros(32)
    state["optimizer.step"] = torch.zeros(())
    path = tmp_path / "keys.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, tiny_config)
    message = str(info.value)
    for key in ("modality_heads.vision.2.weight", "modality_trunks.audio.blocks.1.attn.bias_k",
                "modality_trunks.vision.blocks.9.norm_1.weight", "optimizer.step"):
        assert key in message, message
    assert "missing 2" in message and "unexpected 2" in message, message


def test_shape_mismatch_names_the_key_and_both_shapes(tiny_config, tiny_checkpoint: Path) -> None:
    from imagebind_vectorizer.model.config import config_from_dict
    from tests.conftest import TINY_ARCHITECTURE

    wrong = config_from_dict({**TINY_ARCHITECTURE, "text_embed_dim": 64})
    with pytest.raises(CheckpointError) as info:
        load_model(tiny_checkpoint, wrong, ("text",))
    message = str(info.value)
    assert "modality_preprocessors.text.pos_embed: checkpoint (1, 77, 32), model (1, 77, 64)" in message, message


def test_keys_of_disabled_modalities_are_ignored(tmp_path: Path, tiny_config, official_state) -> None:
    # Only text and vision present, and a broken audio tensor: fine when audio is not loaded.
    state = {k: v for k, v in official_state.items() if k.split(".")[1] in ("text", "vision")}
    state["modality_trunks.audio.blocks.0.attn.bias_k"] = torch.zeros(7)
    path = tmp_path / "text_vision.pth"
    torch.save(state, path)
    model = load_model(path, tiny_config, ("vision", "text"))
    assert model.enabled == ("vision", "text")
    with pytest.raises(CheckpointError, match=r"modality_heads\.audio\.2\.weight"):
        load_model(path, tiny_config, ("text", "audio"))


def test_wrapped_and_legacy_format_checkpoints_load(tmp_path: Path, tiny_config, official_state,
                                                    tiny_model) -> None:
    x = sample_inputs(2)["depth"]
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": official_state}, wrapped)
    legacy = tmp_path / "legacy.pth"
    torch.save(official_state, legacy, _use_new_zipfile_serialization=False)  # cannot be mmapped
    with torch.no_grad():
        for path in (wrapped, legacy):
            assert torch.equal(load_model(path, tiny_config, ("depth",))("depth", x), tiny_model("depth", x))


class _Payload:
    """Unpickling this would run a command that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["text", "empty", "random-bytes", "truncated-zip", "not-a-dict",
                                  "dict-of-numbers", "plain-pickle", "code-execution"])
def test_files_that_are_not_checkpoints_give_a_clear_error(tmp_path: Path, tiny_config, tiny_checkpoint: Path,
                                                           kind: str) -> None:
    import pickle

    path = tmp_path / f"{kind}.pth"
    marker = tmp_path / "pwned"
    if kind == "text":
        path.write_text("this is a README, not weights\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random-bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated-zip":
        data = tiny_checkpoint.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not-a-dict":
        torch.save([torch.zeros(2)], path)
    elif kind == "dict-of-numbers":
        torch.save({"modality_heads.vision.0.weight": 1.5}, path)
    elif kind == "plain-pickle":
        path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    else:
        torch.save({"modality_heads.vision.0.weight": _Payload(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, tiny_config)
    message = str(info.value)
    assert str(path) in message and len(message) < 600, message
    assert "not a loadable PyTorch checkpoint" in message or "state dict of tensors" in message or (
        "pickled Python objects" in message), message
    if kind == "code-execution":
        assert "system" in message, message  # names what was refused
    assert not marker.exists(), "loading a checkpoint ran code from the pickle"


def test_missing_checkpoint_file_is_a_clear_error(tmp_path: Path, tiny_config) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pth", tiny_config)
