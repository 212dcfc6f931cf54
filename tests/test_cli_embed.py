"""`python -m imagebind_vectorizer embed`, run as a subprocess on the tiny checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import media
from tests.conftest import TINY_DIM

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, checkpoint: Path, config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEBIND_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    # float32 pinned: `--dtype auto` may choose bfloat16 on this CPU, and the vectors are compared exactly
    command = [sys.executable, "-m", "imagebind_vectorizer", "embed", "--checkpoint", str(checkpoint),
               "--model-config", str(config), "--dtype", "float32", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli(tmp_path: Path, tiny_checkpoint: Path, tiny_config_path: Path):
    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, checkpoint=tiny_checkpoint, config=tiny_config_path, cwd=tmp_path)
    return call


def vectors_of(result: subprocess.CompletedProcess[str]) -> np.ndarray:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, "one JSON array on stdout, nothing else"
    return np.asarray(json.loads(lines[0]), dtype=np.float32)


def test_text_prints_one_json_array_equal_to_the_python_api(cli, tiny_embedder) -> None:
    vectors = vectors_of(cli("--modality", "text", "a dog", "a cat"))
    assert vectors.shape == (2, TINY_DIM)
    np.testing.assert_array_equal(vectors, tiny_embedder.embed("text", ["a dog", "a cat"]))


def test_files_for_image_and_audio(cli, tiny_embedder, tmp_path: Path) -> None:
    images = [media.image_bytes("PNG", seed=1), media.image_bytes("JPEG", 200, 300, seed=2)]
    paths = [tmp_path / "a.png", tmp_path / "b.jpg"]
    for path, data in zip(paths, images, strict=True):
        path.write_bytes(data)
    np.testing.assert_array_equal(vectors_of(cli("--modality", "image", *map(str, paths))),
                                  tiny_embedder.embed("image", images))
    sound = media.audio_bytes("wav", 2.61, channels=2)
    (tmp_path / "s.wav").write_bytes(sound)
    np.testing.assert_array_equal(vectors_of(cli("--modality", "audio", str(tmp_path / "s.wav"))),
                                  tiny_embedder.embed("audio", [sound]))


def test_a_bad_file_exits_2_with_the_message_on_stderr(cli, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "notes.txt"
    good.write_bytes(media.image_bytes("PNG"))
    bad.write_text("just some notes")
    result = cli("--modality", "image", str(good), str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "image[1]" in result.stderr and str(bad) in result.stderr and "not an image" in result.stderr
    missing = cli("--modality", "audio", str(tmp_path / "absent.wav"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "absent.wav" in missing.stderr


def test_scaling_profile_and_dtype_flags_are_accepted(cli, make_embedder) -> None:
    long_texts = [" ".join(f"word{i}" for i in range(100)), " ".join(f"other{i}" for i in range(100))]
    flags = ("--output-scaling", "official", "--preprocessing", "weaviate-legacy", "--dtype", "bfloat16")
    vectors = vectors_of(cli("--modality", "text", *flags, *long_texts))
    expected = make_embedder(output_scaling="official", preprocessing="weaviate-legacy", dtype="bfloat16",
                             modalities="text").embed("text", long_texts)
    np.testing.assert_allclose(vectors, expected, rtol=1e-6, atol=1e-6)
    assert (vectors[0] == vectors[1]).all(), "legacy: every text over 75 tokens embeds the same"
    assert np.linalg.norm(vectors[0]) == pytest.approx(np.exp(4.2), rel=1e-5), "official scale, kept in float32"


def test_invalid_flag_values_are_refused(cli) -> None:
    result = cli("--modality", "text", "--dtype", "float8", "a dog")
    assert result.returncode == 2 and "float8" in result.stderr
