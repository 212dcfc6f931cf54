"""The architecture: the huge preset's state-dict layout against the official model, configs in the
official argument names, their validation, and building only some encoders."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.errors import ConfigError
from imagebind_vectorizer.kinds import ENCODERS, parse_encoders
from imagebind_vectorizer.model.checkpoint import build_model_from_state_dict
from imagebind_vectorizer.model.config import PRESETS, ImageBindConfig, config_from_dict, load_config
from imagebind_vectorizer.model.imagebind import ImageBind
from tests.conftest import TINY_ARCHITECTURE
from tests.helpers import assert_vectors_match, reference_embed
from tests.tiny_model import discriminative_init

HUGE_STATE_ENTRIES = 1311  # the official imagebind_huge state dict: 1306 parameters + 5 persistent buffers


def official_layout(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def our_layout(model: ImageBind) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.official_state_dict().items()}


def layout_difference(ours: dict[str, tuple[int, ...]], reference: dict[str, tuple[int, ...]]) -> str:
    missing = sorted(set(reference) - set(ours))
    extra = sorted(set(ours) - set(reference))
    shapes = [f"{k}: ours {ours[k]} vs reference {reference[k]}"
              for k in sorted(set(ours) & set(reference)) if ours[k] != reference[k]]
    return f"missing {missing[:10]} (+{max(len(missing) - 10, 0)}), extra {extra[:10]}, shapes {shapes[:10]}"


@pytest.mark.slow
@pytest.mark.reference
def test_huge_preset_has_exactly_the_reference_state_dict(ref) -> None:
    with torch.device("meta"):
        ours = ImageBind(load_config("huge"))
    assert all(p.is_meta for p in ours.parameters()), "building on meta must not allocate weights"
    ours_layout = our_layout(ours)
    # The reference cannot be built on the meta device (its stems run a dummy forward): build it on
    # the CPU once (~5 GB, ~15 s) and drop it straight after.
    reference = ref.model.imagebind_huge(pretrained=False)
    reference_layout = official_layout(reference)
    reference_elements = sum(p.numel() for p in reference.parameters())
    del reference
    gc.collect()

    assert len(reference_layout) == HUGE_STATE_ENTRIES
    assert ours_layout == reference_layout, layout_difference(ours_layout, reference_layout)
    assert reference_elements == 1_200_781_057
    # Ours keeps the learned text scale as a buffer (inference only), so one element fewer.
    assert sum(p.numel() for p in ours.parameters()) == reference_elements - 1


VARIANTS = {
    "tiny": {},
    "vision-patch-16": {"kernel_size": [2, 16, 16]},
    "depth-patch-14": {"depth_kernel_size": 14},
    "thermal-patch-32": {"thermal_kernel_size": 32},
    "audio-stride-16": {"audio_stride": 16},
    "wider-depth-heads": {"depth_embed_dim": 48, "depth_num_heads": 3},
    "out-dim-24": {"out_embed_dim": 24},
}


@pytest.mark.reference
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_small_configs_match_the_reference_layout_and_outputs(ref, variant: str) -> None:
    """Geometry derived from the config (patch grids, strides, head dims) equals the official model's,
    for configs other than the one the other tests use."""
    values = {**TINY_ARCHITECTURE, **VARIANTS[variant]}
    config = config_from_dict(values)
    torch.manual_seed(3)
    reference = ref.model.ImageBindModel(**config.official_kwargs()).eval()
    with torch.device("meta"):
        ours_on_meta = ImageBind(config)
    assert our_layout(ours_on_meta) == official_layout(reference), layout_difference(
        our_layout(ours_on_meta), official_layout(reference))

    ours = build_model_from_state_dict(reference.state_dict(), config, ENCODERS)
    # Weights that separate inputs (tests/tiny_model.py), in both models: with the reference's own
    # init the outputs barely depend on the input, and a wrong patch grid could pass.
    discriminative_init(ours, seed=3)
    reference.load_state_dict(ours.official_state_dict(), strict=True)
    g = torch.Generator().manual_seed(11)
    inputs = {
        "vision": torch.randn(2, 3, 224, 224, generator=g),
        "audio": torch.randn(2, 1, 128, 204, generator=g),
        "depth": torch.randn(2, 1, 224, 224, generator=g),
        "thermal": torch.randn(2, 1, 224, 224, generator=g),
        "imu": torch.randn(2, 6, 2000, generator=g),
    }
    ids = torch.randint(1, 49406, (2, 77), generator=g)
    ids[0, 9] = ids[1, 70] = 49407
    inputs["text"] = ids
    with torch.no_grad():
        for modality, x in inputs.items():
            assert_vectors_match(ours(modality, x), reference_embed(reference, modality, x),
                                 label="model (config variants)", rtol=1e-5, what=f"{variant}/{modality}")


def test_config_json_with_official_argument_names_loads(tmp_path: Path) -> None:
    values = {**TINY_ARCHITECTURE, "kernel_size": [2, 14, 14], "audio_stride": 10, "imu_drop_path": 0.7,
              "video_frames": 2}
    path = tmp_path / "small.json"
    path.write_text(json.dumps(values))
    config = load_config(path)
    assert config.name == "small"
    for name, value in values.items():
        got = getattr(config, name)
        assert (list(got) if isinstance(got, tuple) else got) == value, name
    assert config.kernel_size == (2, 14, 14)
    # Round trip: what /meta shows and what the official constructor takes.
    assert config_from_dict(config.to_json()) == config
    assert set(config.official_kwargs()) == set(ImageBindConfig.__dataclass_fields__) - {"name"}


@pytest.mark.reference
def test_config_arguments_are_exactly_the_official_constructor_arguments(ref) -> None:
    import inspect

    official = inspect.signature(ref.model.ImageBindModel.__init__).parameters
    defaults = {name: p.default for name, p in official.items() if name != "self"}
    ours = ImageBindConfig().official_kwargs()
    assert set(ours) == set(defaults)
    assert {k: (tuple(v) if isinstance(v, list | tuple) else v) for k, v in ours.items()} == {
        k: (tuple(v) if isinstance(v, list | tuple) else v) for k, v in defaults.items()}
    # The huge preset is imagebind_huge()'s non-default arguments.
    source = inspect.getsource(ref.model.imagebind_huge)
    for name, value in PRESETS["huge"].items():
        assert f"{name}={value}" in source.replace(" ", ""), name


BAD_VALUES = [
    ("vision_embed_dim", -32),
    ("vision_embed_dim", "abc"),
    ("vision_embed_dim", 32.0),
    ("vision_num_blocks", True),
    ("text_num_heads", None),
    ("audio_stride", 0),
    ("audio_kernel_size", 0),
    ("audio_target_len", "204"),
    ("kernel_size", [2, 14]),
    ("kernel_size", "x"),
    ("kernel_size", 14),
    ("audio_drop_path", "x"),
    ("imu_drop_path", 1.5),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=[f"{f}={v!r}" for f, v in BAD_VALUES])
def test_bad_values_give_a_config_error_naming_the_field(tmp_path: Path, field: str, value: object) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**TINY_ARCHITECTURE, field: value}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert field in str(info.value) and repr(value) in str(info.value), str(info.value)


@pytest.mark.parametrize(("changes", "words"), [
    ({"depth_num_heads": 5}, ["depth_embed_dim", "depth_num_heads"]),
    ({"kernel_size": [2, 15, 15]}, ["kernel_size"]),
    ({"kernel_size": [2, 14, 16]}, ["kernel_size"]),
    ({"video_frames": 3}, ["video_frames"]),
    ({"depth_kernel_size": 15}, ["depth_kernel_size"]),
    ({"audio_num_mel_bins": 8}, ["audio_kernel_size"]),
])
def test_inconsistent_geometry_gives_a_config_error(changes: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({**TINY_ARCHITECTURE, **changes})
    assert all(word in str(info.value) for word in words), str(info.value)


def test_unknown_fields_are_named(tmp_path: Path) -> None:
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({**TINY_ARCHITECTURE, "vision_embed_dims": 64, "foo": 1}))
    with pytest.raises(ConfigError, match=r"unknown architecture fields \['foo', 'vision_embed_dims'\]"):
        load_config(path)


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", ""])
def test_unreadable_config_files_give_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=r"broken\.json"):
        load_config(path)


def test_missing_config_names_the_presets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="huge"):
        load_config(tmp_path / "nope.json")


@pytest.mark.reference
def test_imu_kernel_size_other_than_8_is_refused(ref) -> None:
    with pytest.raises(ConfigError, match="imu_kernel_size"):
        config_from_dict({**TINY_ARCHITECTURE, "imu_kernel_size": 16})
    # Why: the official model accepts the argument but ignores it; its IMU stem is always a
    # Linear over 6 channels x 8 samples (48 inputs), so honouring 16 would diverge from it.
    kwargs = config_from_dict(TINY_ARCHITECTURE).official_kwargs()
    stem_shapes = []
    for kernel in (8, 16):
        model = ref.model.ImageBindModel(**{**kwargs, "imu_kernel_size": kernel})
        stem_shapes.append(tuple(model.state_dict()["modality_preprocessors.imu.imu_stem.proj.weight"].shape))
    assert stem_shapes[0] == stem_shapes[1] == (TINY_ARCHITECTURE["imu_embed_dim"], 48)


def test_modality_subset_builds_only_those_encoders(tiny_config, tiny_checkpoint: Path) -> None:
    from imagebind_vectorizer.model.checkpoint import load_model

    subset = parse_encoders("text,image")
    assert subset == ("vision", "text")
    with torch.device("meta"):
        full = ImageBind(tiny_config)
        partial = ImageBind(tiny_config, subset)
    assert partial.enabled == subset
    names = [name for name, _ in partial.named_parameters()] + [name for name, _ in partial.named_buffers()]
    assert names and all(name.split(".")[1] in subset for name in names), names
    assert {k.split(".")[1] for k in partial.official_key_map().values()} == set(subset)
    expected = sum(p.numel() for name, p in full.named_parameters() if name.split(".")[1] in subset)
    assert sum(p.numel() for p in partial.parameters()) == expected

    loaded = load_model(tiny_checkpoint, tiny_config, ("audio",))
    assert loaded.enabled == ("audio",)
    assert all(name.startswith("encoders.audio.") for name, _ in loaded.named_parameters())
    with pytest.raises(KeyError):
        loaded("text", torch.zeros(1, 77, dtype=torch.long))


def test_unknown_encoder_is_refused(tiny_config) -> None:
    with pytest.raises(ValueError, match="sound"):
        ImageBind(tiny_config, ("vision", "sound"))
    with pytest.raises(ValueError, match="sound"):
        parse_encoders("vision,sound")
