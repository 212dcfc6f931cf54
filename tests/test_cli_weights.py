"""What the commands that load a model say about the weights, and in which order they work: random
weights announced loudly, a download announced with its size before it starts, the same advice
everywhere when there are no weights (offline), and inputs checked before any model is built.
(The demo's and search's own notices are in tests/e2e.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from imagebind_vectorizer import notices
from imagebind_vectorizer.errors import CheckpointError
from imagebind_vectorizer.runtime.weights import CheckpointSource, resolve_checkpoint
from imagebind_vectorizer.weaviate.local import LocalVectorizer
from tests import media

ROOT = Path(__file__).resolve().parents[1]
#: the process reports which heavy modules it loaded, so "checked before the model" is visible
PROBE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("\\nLOADED torch=%s" % ("torch" in sys.modules)))
from imagebind_vectorizer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEBIND_")}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-c", PROBE, *argv], env=base | (env or {}), cwd=cwd,
                          capture_output=True, text=True, timeout=180)


def closed_port_url() -> str:
    """A URL nothing answers (a port that was free a moment ago): a download fails as if offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/imagebind/imagebind_huge.pth"


def test_embed_with_random_weights_says_so_loudly(tiny_config_path: Path) -> None:
    result = cli("embed", "--modality", "text", "--random-weights", "--model-config", str(tiny_config_path), "a dog")
    assert result.returncode == 0, result.stderr
    assert notices.banner(notices.RANDOM_WEIGHTS) in result.stderr
    assert result.stdout.startswith("[[")  # the vectors still come, on stdout alone


def test_serve_with_random_weights_says_so_in_its_log(tiny_config_path: Path, tmp_path: Path) -> None:
    server = LocalVectorizer(["--random-weights", "--model-config", str(tiny_config_path), "--log-format", "text"],
                             log_path=tmp_path / "serve.log", python=sys.executable)
    with server:
        log = server.log_tail(200)
    assert notices.RANDOM_WEIGHTS in log and "WARNING" in log


def test_without_weights_embed_announces_the_download_and_offline_explains_what_to_do(tmp_path: Path) -> None:
    picture = tmp_path / "cat.png"
    picture.write_bytes(media.image_bytes("PNG"))
    url = closed_port_url()  # (the official URL would reach for the network; its notice adds the size)
    result = cli("embed", "--modality", "image", str(picture), env={
        "IMAGEBIND_CACHE": str(tmp_path / "cache"), "IMAGEBIND_CHECKPOINT_URL": url})
    assert result.returncode == 2, result.stderr
    text = result.stderr
    announced = text.index(notices.download_notice(url, tmp_path / "cache" / "imagebind_huge.pth", official=False))
    assert "No ImageBind weights are available" in text[announced:]
    for advice in ("imagebind-vectorizer download", "--checkpoint /path/to/imagebind_huge.pth", "--random-weights",
                   str(tmp_path / "cache" / "imagebind_huge.pth")):
        assert advice in text, advice
    assert "Traceback" not in text and result.stdout == ""


def test_the_official_download_is_announced_with_its_size_and_licence() -> None:
    text = notices.download_notice("https://example.invalid/imagebind_huge.pth", Path("/cache/imagebind_huge.pth"))
    assert notices.CHECKPOINT_SIZE in text and "non-commercial" in text and "/cache/imagebind_huge.pth" in text


def test_every_download_failure_carries_the_same_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The download command, serve and the demo all go through resolve_checkpoint."""
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # the retries' back-off
    said: list[str] = []
    source = CheckpointSource(url=closed_port_url(), cache_dir=tmp_path)
    with pytest.raises(CheckpointError) as failure:
        resolve_checkpoint(source, progress=False, announce=said.append)
    assert said == [notices.download_notice(source.url, source.cached_path(), official=False)]
    assert str(failure.value).endswith(notices.how_to_provide_weights(source.cached_path()))


def test_a_missing_file_is_reported_before_anything_heavy_loads(tmp_path: Path) -> None:
    result = cli("embed", "--modality", "audio", str(tmp_path / "absent.wav"), "--checkpoint",
                 str(tmp_path / "no-such-checkpoint.pth"))
    assert result.returncode == 2
    assert "absent.wav" in result.stderr and "no-such-checkpoint" not in result.stderr
    assert "LOADED torch=False" in result.stderr


def test_a_corrupt_file_is_reported_before_the_weights_are_looked_for(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not the rest of a PNG" * 4)
    result = cli("embed", "--modality", "image", str(corrupt), "--checkpoint", str(tmp_path / "no-such-checkpoint.pth"))
    assert result.returncode == 2
    assert str(corrupt) in result.stderr and "no-such-checkpoint" not in result.stderr
