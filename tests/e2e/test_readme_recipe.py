"""README's "Both on one host, without Docker" runs exactly as written: its shell blocks, in order, in
one bash, with only what a person's `make shell` gives them on PATH (this checkout's command and the
built weaviate-server). They use the default ports (ours 8011/50061, Weaviate's 8080/50051), so they
run in a network namespace of their own, where those ports are free whatever else runs on this machine.
The environment points the server at the tiny test architecture with random weights (the recipe would
download 4.8 GB otherwise), which also shows that search and classify announce random weights."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from imagebind_vectorizer import notices
from imagebind_vectorizer.weaviate.local import find_weaviate_binary
from tests.helpers import checkout_env

ROOT = Path(__file__).resolve().parents[2]
SECTION = "#### Both on one host, without Docker"


def recipe_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    if SECTION not in text:
        return []
    section = text[text.index(SECTION) + len(SECTION):]
    section = section[:re.search(r"^#{1,4} ", section, re.M).start()]
    return re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M)


def test_the_recipe_is_found() -> None:
    blocks = recipe_blocks()
    assert len(blocks) == 4
    assert "imagebind-vectorizer serve" in blocks[0] and "weaviate-server" in blocks[1]


def _own_network() -> bool:
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=30) \
        if shutil.which("unshare") else None
    return probe is not None and probe.returncode == 0


@pytest.mark.weaviate
def test_the_one_host_recipe_runs_as_written(tmp_path: Path, tiny_config_path: Path) -> None:
    if not _own_network():
        pytest.skip("needs `unshare --net` (root, util-linux) for a network namespace with free default ports")
    env_dir = tmp_path / "checkout-env"  # what `make` gives this checkout: .venv with the command in bin/
    checkout_env(env_dir)
    home = tmp_path / "home"
    home.mkdir()
    weaviate_dir = find_weaviate_binary(build=False).parent
    env = {
        "PATH": f"{env_dir / 'bin'}:{weaviate_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home), "TMPDIR": os.environ.get("TMPDIR", "/tmp"), "LANG": "C.UTF-8",
        "IMAGEBIND_RANDOM_WEIGHTS": "true", "IMAGEBIND_MODEL_CONFIG": str(tiny_config_path),
    }
    # The loopback interface of a new namespace starts down; the trap stops whatever a failing block
    # left running (the recipe's own last block stops both servers).
    script = "ip link set lo up\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + "\n".join(recipe_blocks())
    process = subprocess.Popen(["unshare", "--net", "bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the recipe did not finish:\n{out[-3000:]}\n{err[-3000:]}")
    output = out + err
    assert process.returncode == 0, output[-6000:]
    assert re.search(r"^Media: \d+ inserted, 0 already present, 0 duplicate file\(s\), 0 failed", out, re.M), out
    assert "nearText · text:a sunset over the sea" in out and "nearAudio · audio:beep_440hz.wav" in out
    assert '"operator": "composed nearVector"' in out and '"source": "sunset.jpg; waves.flac"' in out
    assert re.search(r"^  a beep +\d+\.\d+%", out, re.M)  # the zero-shot classification
    assert re.search(r"^Media: \d+ objects$", out, re.M)  # collection show
    assert err.count(notices.banner(notices.RANDOM_WEIGHTS)) >= 4, "each search and the classification say it"
    assert "Traceback" not in output
    assert (home / ".local" / "share" / "weaviate").is_dir(), "Weaviate's data stays out of the current folder"
    assert not (ROOT / "data").exists()
