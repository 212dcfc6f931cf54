"""Shared fixtures: a tiny architecture and checkpoints in the official format, generated here."""

from __future__ import annotations

import getpass
import json
import multiprocessing.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.kinds import ENCODERS
from imagebind_vectorizer.model.checkpoint import save_official_checkpoint
from imagebind_vectorizer.model.config import config_from_dict
from imagebind_vectorizer.model.imagebind import random_model
from imagebind_vectorizer.settings import Settings
from tests.deploy.helpers import remove_helm_home
from tests.tiny_model import TINY_SEED, discriminative_init

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


def tiny_model_for_tests(config) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    """The session's tiny model: random weights made discriminative, with a learned text scale."""
    model = random_model(config, ENCODERS, seed=TINY_SEED)
    discriminative_init(model, TINY_SEED)
    with torch.no_grad():  # a learned text scale that is not the init value, as in a trained model
        model.encoders["text"].logit_scale.log_logit_scale.fill_(4.2)
    return model


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_config) -> Path:
    """Weights for all six encoders that separate different inputs (`discriminative_init`), saved
    under the official key names; every parity test compares through them."""
    path = tmp_path_factory.mktemp("checkpoint") / "imagebind_tiny.pth"
    save_official_checkpoint(tiny_model_for_tests(tiny_config), path)
    return path


@pytest.fixture(scope="session")
def tiny_settings(tiny_config_path: Path, tiny_checkpoint: Path) -> Settings:
    # float32 explicitly: `--dtype auto` may pick bfloat16 on a CPU with AMX, and parity needs float32
    return Settings.load(env={}, checkpoint=str(tiny_checkpoint), model_config=str(tiny_config_path), dtype="float32")


@pytest.fixture(scope="session")
def tiny_embedder(tiny_settings: Settings):
    from imagebind_vectorizer.runtime.embedder import Embedder

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
    from imagebind_vectorizer.runtime.embedder import Embedder

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
        rel = (f"  rel {entry['max_rel']:.3g}  norm ratio {entry['max_norm_dev']:.3g}"
               if "max_rel" in entry else "")
        terminalreporter.write_line(f"{label:32s} max abs {entry['max_abs']:.3g}{cos}{rel}  "
                                    f"({entry['count']} comparisons)")


# Temporary files ---------------------------------------------------------------------------------
#: this session's temporary folder: TMPDIR for the tests, the code they run and every server they start
SESSION_TMP: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    """Every temporary file of the session goes into one fresh folder (pytest's own tmp_path
    folders too), so that the end of the session can check that nothing else was left behind."""
    # This process's multiprocessing folder (the decoder pool's forkserver socket) is made first, in
    # the usual place: multiprocessing removes it at exit, after this session's check.
    multiprocessing.util.get_temp_dir()
    _forget_old_runs(Path(tempfile.gettempdir()))
    root = Path(tempfile.mkdtemp(prefix="ibv-tests-"))
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    SESSION_TMP.append(root)


KEPT_RUNS = 3  # the folders of this many finished, unsuccessful runs are kept to look into (as pytest does)


def _forget_old_runs(tmp: Path) -> None:
    finished = sorted((p for p in tmp.glob("ibv-tests-*") if (p / ".finished").exists()),
                      key=lambda p: (p / ".finished").stat().st_mtime)
    for old in finished[:-KEPT_RUNS]:  # never a running session's folder: it has no .finished yet
        shutil.rmtree(old, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _helm_home_is_removed() -> object:
    yield
    remove_helm_home()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a test, the CLI or a server it started left a temporary file or folder;
    remove the session's folder when all went well (it keeps pytest's tmp_path folders otherwise)."""
    if not SESSION_TMP:
        return
    root = SESSION_TMP.pop()
    user = getpass.getuser()
    # Not leaks: pytest's tmp_path folders, and torch's per-user cache folder (torch.load creates it
    # once per user and reuses it; it is no file of ours).
    expected = {f"pytest-of-{user}", f"torchinductor_{user}"}
    left = sorted(p.name for p in root.iterdir() if p.name not in expected)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_sep("=", "temporary files left behind", red=True)
            reporter.write_line(f"in {root} (TMPDIR of this run): {', '.join(left[:20])}")
    elif exitstatus == 0:
        shutil.rmtree(root, ignore_errors=True)
        return
    (root / ".finished").touch()
    if reporter is not None:
        reporter.write_line(f"this run's temporary files: {root}")
