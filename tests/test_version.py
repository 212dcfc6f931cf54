"""One version: `imagebind_vectorizer/version.py`. pyproject.toml reads it (setuptools' dynamic `attr`),
the Helm chart's default image tag derives from its appVersion; the files that must state it literally
(the chart's appVersion, the Dockerfiles' label, image tags in compose files and in the READMEs'
commands) are held to it here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from imagebind_vectorizer.version import __version__

ROOT = Path(__file__).resolve().parents[1]
#: an image tag of ours: imagebind-vectorizer:0.1.0-cpu, or compose's ${IMAGEBIND_IMAGE_TAG:-0.1.0-cuda}
IMAGE_TAG = re.compile(r"imagebind-vectorizer:(?:\$\{IMAGEBIND_IMAGE_TAG:-)?(\d+\.\d+\.\d+)")
#: files known to state a tag (every other text file is searched too)
STATING_FILES = ("README.md", "docker/README.md", "docker/Dockerfile", "docker/Dockerfile.cuda",
                 "docker/compose.yaml", "docker/compose.gpu.yaml")


def _text_files() -> list[Path]:
    found = [path for pattern in ("*.md", "*.yaml", "*.yml", "*.txt", "*.tpl", "Dockerfile*", "*.py", "*.sh")
             for path in ROOT.rglob(pattern)]
    return [path for path in found if not {".venv", ".git", "__pycache__"} & set(path.relative_to(ROOT).parts)]


def test_pyproject_takes_the_version_from_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "imagebind_vectorizer.version.__version__"}


def test_every_file_that_states_the_version_states_this_one() -> None:
    stated = [(str(path.relative_to(ROOT)), version) for path in _text_files()
              for version in IMAGE_TAG.findall(path.read_text(errors="replace"))]
    assert {name for name, _ in stated} >= set(STATING_FILES), "the tag pattern no longer finds the known tags"
    assert [(name, v) for name, v in stated if v != __version__] == []
    for dockerfile in ("docker/Dockerfile", "docker/Dockerfile.cuda"):
        assert re.findall(r"^ARG VERSION=(\S+)$", (ROOT / dockerfile).read_text(), re.M) == [__version__]
    chart = (ROOT / "helm/imagebind-vectorizer/Chart.yaml").read_text()
    assert re.findall(r'^appVersion: "(.*)"$', chart, re.M) == [__version__]
