"""The checkpoint init container's command (also compose's model-download and the Dockerfiles' BAKE_WEIGHTS
step), taken from the rendered chart and run for real against a loopback file server with a small stand-in
checkpoint."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.helpers import REPO, checkpoint_command
from tests.deploy.servers import serve_files

pytestmark = pytest.mark.deploy

NAME = "imagebind_huge.pth"


@pytest.fixture
def origin(tmp_path):
    """(url, sha256, requests, payload) of a stand-in checkpoint served on 127.0.0.1."""
    served = tmp_path / "origin"
    served.mkdir()
    payload = os.urandom(300_000)
    (served / NAME).write_bytes(payload)
    requests: list[str] = []
    with serve_files(served, requests) as port:
        yield f"http://127.0.0.1:{port}/{NAME}", hashlib.sha256(payload).hexdigest(), requests, payload


def command() -> list[str]:
    """The chart's init container command, with this checkout's code as the image's entrypoint."""
    return [sys.executable, "-m", "imagebind_vectorizer", *checkpoint_command()]


def fetch(cache: Path, url: str, sha256: str = "", **extra: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "HOME": str(cache.parent),
           "IMAGEBIND_CACHE": str(cache), "IMAGEBIND_CHECKPOINT_URL": url, "IMAGEBIND_CHECKPOINT_SHA256": sha256,
           "IMAGEBIND_CHECKPOINT": "", **extra}
    return subprocess.run(command(), env=env, capture_output=True, text=True, timeout=120)


def test_downloads_checks_and_records_once(tmp_path, origin):
    url, digest, requests, payload = origin
    cache = tmp_path / "models"
    first = fetch(cache, url, digest)
    assert first.returncode == 0, first.stderr
    assert (cache / NAME).read_bytes() == payload
    assert (cache / f"{NAME}.sha256").read_text().split() == [digest, str(len(payload))]
    assert digest in first.stdout
    assert not (cache / f"{NAME}.part").exists()
    assert requests == [f"/{NAME}"]
    # A restarted pod: the cached file is verified from its sidecar, nothing is downloaded again.
    second = fetch(cache, url, digest)
    assert second.returncode == 0, second.stderr
    assert requests == [f"/{NAME}"]


def test_without_a_pinned_digest_it_records_one(tmp_path, origin):
    url, digest, _requests, _payload = origin
    result = fetch(tmp_path / "models", url)
    assert result.returncode == 0, result.stderr
    assert f"sha256: {digest}" in result.stdout  # logged so that an operator can pin it


def test_wrong_digest_fails_and_leaves_nothing(tmp_path, origin):
    url, _digest, _requests, _payload = origin
    cache = tmp_path / "models"
    result = fetch(cache, url, "0" * 64)
    assert result.returncode != 0
    assert "sha256" in result.stderr
    assert not (cache / NAME).exists() and not (cache / f"{NAME}.part").exists()


def test_cached_file_that_does_not_match_the_pinned_digest_fails(tmp_path, origin):
    url, digest, requests, _payload = origin
    cache = tmp_path / "models"
    assert fetch(cache, url).returncode == 0
    # Recorded digest differs from the pin.
    result = fetch(cache, url, "f" * 64)
    assert result.returncode != 0 and "sha256" in result.stderr
    # No sidecar (a file copied in by hand): the digest is computed, then compared.
    (cache / f"{NAME}.sha256").unlink()
    (cache / NAME).write_bytes(b"not the checkpoint")
    result = fetch(cache, url, digest)
    assert result.returncode != 0 and "expected " + digest in result.stderr
    assert len(requests) == 1


def test_explicit_checkpoint_is_never_downloaded(tmp_path, origin):
    url, _digest, requests, payload = origin
    local = tmp_path / "baked" / "weights.pth"
    local.parent.mkdir()
    local.write_bytes(payload)
    result = fetch(tmp_path / "models", url, IMAGEBIND_CHECKPOINT=str(local))
    assert result.returncode == 0, result.stderr
    assert requests == []
    missing = fetch(tmp_path / "models", url, IMAGEBIND_CHECKPOINT=str(tmp_path / "nope.pth"))
    assert missing.returncode != 0 and requests == []


def test_pods_sharing_a_volume_download_once(tmp_path, origin):
    """Two init containers on one (ReadWriteMany) volume at once: the file lock lets one download."""
    url, digest, requests, payload = origin
    cache = tmp_path / "models"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
           "IMAGEBIND_CACHE": str(cache), "IMAGEBIND_CHECKPOINT_URL": url, "IMAGEBIND_CHECKPOINT_SHA256": digest}
    procs = [subprocess.Popen(command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    assert (cache / NAME).read_bytes() == payload
    assert requests == [f"/{NAME}"]


def test_a_link_planted_as_the_lock_file_is_not_followed(tmp_path, origin):
    """The cache may be writable by others: a symlink named like the lock must not make the command
    create or open a file elsewhere."""
    url, digest, requests, _payload = origin
    cache = tmp_path / "models"
    cache.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (cache / ".download.lock").symlink_to(elsewhere)
    result = fetch(cache, url, digest)
    assert result.returncode != 0 and "symbolic link" in result.stderr
    assert not elsewhere.exists() and requests == []
