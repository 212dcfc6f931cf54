"""The first-run set-up (`make demo`, `make test`): this checkout's command in its own small
environment over the shared one, and cache installs that announce themselves, show their tool's
progress and survive two `make` runs racing each other. Real scripts; the 25-minute tools they drive
(pip, go) are stood in for by small programs that print what the real ones print."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from imagebind_vectorizer.version import __version__
from imagebind_vectorizer.weaviate.local import WEAVIATE_BUILD_ESTIMATE, WEAVIATE_BUILD_PACKAGES
from tests.helpers import checkout_env

ROOT = Path(__file__).resolve().parents[1]
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}


def run_in(env: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a program of `env` from the file system root, with no PYTHONPATH: as a person would."""
    return subprocess.run([str(env / "bin" / argv[0]), *argv[1:]], cwd="/", env=CLEAN_ENV, capture_output=True,
                          text=True, timeout=120)


# This checkout's command ---------------------------------------------------------------------------
def test_the_command_and_python_m_run_this_checkout_from_any_folder(tmp_path: Path) -> None:
    env = tmp_path / "env"
    assert f"this checkout's command: {env / 'bin' / 'imagebind-vectorizer'}" in checkout_env(env)
    assert checkout_env(env) == "", "a second run changes nothing and says nothing"

    version = run_in(env, "imagebind-vectorizer", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"imagebind-vectorizer {__version__}", version
    assert "usage: imagebind-vectorizer" in run_in(env, "python", "-m", "imagebind_vectorizer", "--help").stdout
    where = run_in(env, "python", "-c", "import importlib.metadata as m, imagebind_vectorizer as p, weaviate; "
                                        "print(p.__file__); print(m.version('imagebind-vectorizer'))")
    assert where.stdout.split() == [str(ROOT / "imagebind_vectorizer" / "__init__.py"), __version__], where.stderr
    assert sum(f.stat().st_size for f in env.rglob("*") if f.is_file() and not f.is_symlink()) < 100_000


def test_each_checkout_gets_its_own_code_over_one_shared_environment(tmp_path: Path) -> None:
    """Two checkouts (git worktrees) share the environment; each one's command runs its own files."""
    other = tmp_path / "other-checkout"
    (other / "imagebind_vectorizer" / "cli").mkdir(parents=True)
    (other / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "imagebind-vectorizer"
        version = "9.9.9"
        [project.scripts]
        imagebind-vectorizer = "imagebind_vectorizer.cli:main"
    """))
    (other / "imagebind_vectorizer" / "__init__.py").write_text("")
    (other / "imagebind_vectorizer" / "cli" / "__init__.py").write_text(
        "def main():\n    print('the other checkout')\n    return 0\n")
    checkout_env(tmp_path / "ours")
    checkout_env(tmp_path / "theirs", other)
    assert run_in(tmp_path / "theirs", "imagebind-vectorizer").stdout == "the other checkout\n"
    assert run_in(tmp_path / "ours", "imagebind-vectorizer", "--version").stdout.startswith("imagebind-vectorizer ")


def test_make_gave_this_checkout_its_command() -> None:
    env = os.environ.get("IBV_CHECKOUT_ENV")
    if not env:
        pytest.skip("run by make (which exports IBV_CHECKOUT_ENV)")
    result = run_in(Path(env), "imagebind-vectorizer", "--version")
    assert result.returncode == 0 and __version__ in result.stdout


# The shared Python environment: one build however many `make`s start it --------------------------
FAKE_PYTHON = """#!/usr/bin/env bash
# python3 for scripts/python_env.sh: `-m venv DIR` makes a venv whose python logs pip calls slowly.
if [[ $1 == -m && $2 == venv ]]; then
    mkdir -p "$3/bin"
    printf '#!/usr/bin/env bash\\necho "pip $*" >> "%s"\\nsleep 0.5\\n' "$PIP_LOG" > "$3/bin/python"
    chmod +x "$3/bin/python"
    exit 0
fi
exec python3 "$@"
"""


def test_two_makes_build_the_python_environment_once(tmp_path: Path) -> None:
    fake = tmp_path / "python3-fake"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    venv, log = tmp_path / "cache" / "venv-test", tmp_path / "pip.log"
    env = {**CLEAN_ENV, "PYTHON": str(fake), "PIP_LOG": str(log)}
    outputs: list[subprocess.CompletedProcess[str]] = []

    def build() -> None:
        outputs.append(subprocess.run(["bash", "scripts/python_env.sh", str(venv)], cwd=ROOT, env=env,
                                      capture_output=True, text=True, timeout=120))

    racers = [threading.Thread(target=build) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert [o.returncode for o in outputs] == [0, 0], [o.stderr for o in outputs]
    assert (venv / ".ready").is_file()
    calls = log.read_text().splitlines()
    assert len(calls) == 3 and calls[0].startswith("pip -m pip install --quiet --upgrade pip"), calls
    assert "--quiet" not in calls[1], "the long install shows pip's own progress"
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert text.count("== set-up: the Python environment") == 1
    assert "About 7 minutes on 2 cores and 5.9 GB of disk" in text
    assert "waiting for another make" in text


# Weaviate: one build, announced, with go's own progress ------------------------------------------------
FAKE_GO = """#!/usr/bin/env bash
# `go install -v ...`: go's messages on stderr, one package path per compiled package on stderr too
echo "go $*" >> "$GO_LOG"
[[ -n ${GO_FAIL:-} ]] && { echo "# github.com/weaviate/weaviate/x"; echo "x.go:1:1: syntax error" ; exit 1; } >&2
for m in 1 2 3; do echo "go: downloading github.com/example/module$m v1.0.$m" >&2; done
for p in $(seq 1 250); do echo "github.com/example/pkg$p" >&2; done
sleep 1
printf '#!/bin/sh\\n' > "$GOBIN/weaviate-server"
chmod +x "$GOBIN/weaviate-server"
"""
BUILD = """
import sys
from pathlib import Path
from imagebind_vectorizer.weaviate.local import build_weaviate, LocalServerError
try:
    print(build_weaviate(Path(sys.argv[1]), version="v0.0.1", progress=False))
except LocalServerError as exc:
    print("error:", exc)
    sys.exit(1)
"""


@pytest.fixture
def fake_go(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "go").write_text(FAKE_GO)
    (bin_dir / "go").chmod(0o755)
    return {**CLEAN_ENV, "PATH": f"{bin_dir}:{CLEAN_ENV['PATH']}", "GO_LOG": str(tmp_path / "go.log"),
            "PYTHONPATH": str(ROOT)}


def build(env: dict[str, str], dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BUILD, str(dest)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_weaviate_is_built_once_announced_and_with_gos_progress(tmp_path: Path, fake_go: dict[str, str]) -> None:
    dest = tmp_path / "cache" / "weaviate-v0.0.1" / "weaviate-server"
    outputs: list[subprocess.CompletedProcess[str]] = []
    racers = [threading.Thread(target=lambda: outputs.append(build(fake_go, dest))) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert [o.returncode for o in outputs] == [0, 0], [o.stdout + o.stderr for o in outputs]
    assert all(o.stdout.strip() == str(dest) for o in outputs)
    assert len((tmp_path / "go.log").read_text().splitlines()) == 1, "the second waited and reused the first build"
    assert "go install -v -tags netgo github.com/weaviate/weaviate/cmd/weaviate-server@v0.0.1" in \
        (tmp_path / "go.log").read_text()
    text = "".join(o.stderr for o in outputs)
    assert text.count("== set-up: building weaviate-server v0.0.1") == 1 and WEAVIATE_BUILD_ESTIMATE in text
    assert "waiting for another build of weaviate-server" in text
    assert "go: downloading github.com/example/module2 v1.0.2" in text  # go's own messages, as go wrote them
    assert f"200 of about {WEAVIATE_BUILD_PACKAGES} packages compiled" in text  # a count, not 250 lines
    assert "github.com/example/pkg7" not in text
    assert sorted(dest.parent.iterdir()) == [dest.parent / ".build.lock", dest], "no temporary folder left"


def test_a_failed_weaviate_build_shows_gos_errors(tmp_path: Path, fake_go: dict[str, str]) -> None:
    result = build({**fake_go, "GO_FAIL": "1"}, tmp_path / "w" / "weaviate-server")
    assert result.returncode == 1
    assert "x.go:1:1: syntax error" in result.stderr and "# github.com/weaviate/weaviate/x" in result.stderr
    assert "failed (exit 1); see the output above" in result.stdout
