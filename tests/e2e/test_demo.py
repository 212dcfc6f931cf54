"""`imagebind-vectorizer demo` end to end: our server + a real local Weaviate + the sample media."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from imagebind_vectorizer import notices
from tests.e2e.support import subprocess_env

SECTIONS = ["text", "image", "audio", "video", "depth", "thermal", "IMU"]
QUERY_FILES = {"image": "red_square.png", "audio": "beep_440hz.wav", "video": "bouncing_ball.mp4",
               "depth": "room_depth.png", "thermal": "warm_hand_thermal.jpg", "IMU": "walking.csv"}


def sections(output: str) -> dict[str, str]:
    parts = re.split(r"^== (.+)$", output, flags=re.M)
    return {title.split("   [")[0].strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def result_rows(body: str) -> list[str]:
    return [line for line in body.splitlines() if re.match(r"^\s+\d+\s+[0-9.]+\s+[0-9a-f]{8}\s", line)]


def port_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, int(port))) != 0


def run_demo(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagebind_vectorizer", "demo", *args], env=env or subprocess_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.weaviate
def test_demo_runs_every_query_on_the_sample_media_and_shuts_down(e2e_checkpoint: Path, tiny_config_path: Path):
    result = run_demo("--checkpoint", str(e2e_checkpoint), "--model-config", str(tiny_config_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ImageBindDemo: 11 inserted, 0 already present, 0 duplicate file(s), 0 failed" in output
    assert "RANDOM WEIGHTS" not in output
    found = sections(result.stdout)
    for name in SECTIONS:
        rows = result_rows(found[name])
        assert rows, f"no results for {name}:\n{found[name]}"
    for name, file in QUERY_FILES.items():  # the object holding the query's own file ranks first
        rows = result_rows(found[name])
        # (the tiny random model puts the two IMU recordings almost level: either may come first)
        assert any(file in row for row in rows[:2 if name == "IMU" else 1]), found[name]
    hybrid = result_rows(found["filtered hybrid (category=sound, alpha 0.5)"])
    assert hybrid and all(row.rstrip().endswith("sound") for row in hybrid)
    composed = result_rows(found["composed: sunset image + waves audio"])
    assert "sunset.jpg; waves.flac" in composed[0]
    assert re.search(r"^\s+a beep\s+\d+\.\d+%", found["zero-shot classification of beep_440hz.wav"], re.M)
    # moments: the long recording went in as 12 ten-second segments, and each moment query points
    # into it with start-end times (which window ranks first is for real weights to say: the tiny
    # random model does not hear a beep; tests/e2e/test_moments.py checks the ranking exactly)
    assert "ImageBindDemoMoments: 1 file(s): 1 segmented" in output and "12 moment object(s) written" in output
    for query in ("audio beep_440hz.wav", "text waves breaking on a beach"):
        body = found[f"when in the recording: {query}"]
        assert re.search(r"^1\. field_recording\.wav \(audio\)", body, re.M), body
        assert len(re.findall(r"^\s+\d:\d\d–\d:\d\d\s+\[segment \d+\]", body, re.M)) == 3, body
    assert "error" not in result.stdout.lower()

    urls = re.findall(r"starting (?:the vectorizer|Weaviate) on (http://127\.0\.0\.1:\d+)", output)
    assert len(urls) == 2
    assert all(port_closed(url) for url in urls)  # both processes are gone


@pytest.mark.weaviate
def test_demo_with_random_weights_labels_every_result_and_can_use_an_existing_weaviate(
        tiny_config_path: Path, weaviate_server, client):
    result = run_demo("--random-weights", "--model-config", str(tiny_config_path), "--weaviate-url",
                      weaviate_server.url, "--weaviate-grpc-port", str(weaviate_server.grpc_port),
                      "--collection", "DemoRandomWeights")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert notices.banner(notices.RANDOM_WEIGHTS) in output
    titles = re.findall(r"^== (.+)$", result.stdout, flags=re.M)
    assert len(titles) == 13  # 7 kinds, hybrid, composed, classification, moments and 2 moment queries
    assert all("[random weights: rankings are meaningless]" in title for title in titles)
    assert not client.collections.exists("DemoRandomWeights")  # the demo cleans up after itself
    assert not client.collections.exists("DemoRandomWeightsMoments")


def test_demo_without_weights_says_so_and_how_to_fix_it(tmp_path: Path):
    env = subprocess_env()
    env["IMAGEBIND_CACHE"] = str(tmp_path / "empty-cache")
    result = run_demo("--no-download", env=env, timeout=120)
    assert result.returncode == 2
    assert "No ImageBind weights are available" in result.stdout
    assert "--checkpoint /path/to/imagebind_huge.pth" in result.stdout
    assert "imagebind-vectorizer download" in result.stdout
    assert "--random-weights" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "starting" not in result.stdout  # nothing was started
