"""Moment search against the real Weaviate and our real server: long recordings ingested as timed
segments (vectors from VectorizeSegments, provided to the module-configured vector), found to the
window by nearAudio / nearVideo / nearImage / nearText and hybrid, grouped by file, filtered;
ingest is idempotent, survives SIGKILL, and reports a corrupted stretch while the rest lands."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.collections import create_collection, get_collection
from imagebind_vectorizer.weaviate.moments import make_moments_spec, search_moments
from imagebind_vectorizer.weaviate.search import QueryInput
from tests import media
from tests.e2e.support import subprocess_env

pytestmark = pytest.mark.weaviate

AUDIO_SECONDS, VIDEO_SECONDS, FPS = 240.0, 180.0, 2
AUDIO_WINDOWS, VIDEO_WINDOWS = 24, 18


def count(collection, **where: object) -> int:
    from weaviate.classes.query import Filter

    filters = [Filter.by_property(k).equal(v) for k, v in where.items()]
    if not filters:
        return collection.aggregate.over_all(total_count=True).total_count
    return collection.aggregate.over_all(filters=Filter.all_of(filters) if len(filters) > 1 else filters[0],
                                         total_count=True).total_count


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-minute lecture (a different chord every 10 s) and a 3-minute dash-cam video (a different
    scene and chord every 10 s), with metadata in sidecars; generated once, cheaply."""
    folder = tmp_path_factory.mktemp("recordings")
    (folder / "lecture.wav").write_bytes(media.wav_bytes(media.window_tone(AUDIO_SECONDS, 16000, 10.0, seed=21), 16000))
    (folder / "lecture.wav.json").write_text(json.dumps({"title": "a lecture about barking dogs", "speaker": "Ada"}))
    (folder / "dashcam.mp4").write_bytes(media.window_video_bytes(VIDEO_SECONDS, FPS, 10.0, audio_rate=16000, seed=22))
    (folder / "dashcam.mp4.json").write_text(json.dumps({"title": "rain on the motorway", "speaker": "car"}))
    (folder / "notes.txt").write_text("not a recording")
    return folder


def _ingest(weaviate_server, vectorizer, folder: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "imagebind_vectorizer", "ingest", str(folder), "--collection", name,
            "--segments", "10s", "--no-progress", "--weaviate-url", weaviate_server.url,
            "--weaviate-grpc-port", str(weaviate_server.grpc_port), "--server-grpc", vectorizer.grpc_address, *extra]
    return subprocess.run(argv, env=subprocess_env(), capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def moments(client, weaviate_server, vectorizer, recordings: Path):
    """The recordings ingested once into a moment collection (shared by the query tests)."""
    name = "E2eMoments"
    if client.collections.exists(name):
        client.collections.delete(name)
    create_collection(client, make_moments_spec(name, properties=["speaker:text"]))
    result = _ingest(weaviate_server, vectorizer, recordings, name)
    assert result.returncode == 0, result.stdout + result.stderr
    yield get_collection(client, name), result.stdout
    client.collections.delete(name)


def test_every_window_becomes_one_object_per_part(moments) -> None:
    collection, report = moments
    assert count(collection, media="audio") == AUDIO_WINDOWS
    assert count(collection, media="video", part="visual") == VIDEO_WINDOWS
    assert count(collection, media="video", part="audio") == VIDEO_WINDOWS
    assert "2 segmented" in report and "skipped: notes.txt" in report
    stored = collection.query.fetch_objects(limit=200, include_vector=True).objects
    assert all(set(o.vector) == {"moment"} for o in stored)
    assert not any(o.properties.get("audio") or o.properties.get("video") for o in stored)  # no media bytes


def test_ingesting_again_writes_nothing(moments, weaviate_server, vectorizer, recordings: Path) -> None:
    collection, _ = moments
    before = count(collection)
    result = _ingest(weaviate_server, vectorizer, recordings, collection.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 segmented, 2 already complete" in result.stdout and "0 moment object(s) written" in result.stdout
    assert count(collection) == before


def _window_wav(folder: Path, index: int) -> bytes:
    samples = media.window_tone(AUDIO_SECONDS, 16000, 10.0, seed=21)
    return media.wav_bytes(samples[:, index * 160000:(index + 1) * 160000], 16000)


@pytest.mark.parametrize("window", [3, 17])
def test_near_audio_with_one_windows_bytes_finds_that_window_first(moments, recordings: Path, window: int) -> None:
    collection, _ = moments
    result = search_moments(collection, QueryInput.of(InputKind.AUDIO, _window_wav(recordings, window)))
    best = result.groups[0]
    assert best.source == "lecture.wav"
    assert (best.moments[0].segment, best.moments[0].start, best.moments[0].end) == (window, 10.0 * window,
                                                                                    10.0 * (window + 1))
    assert best.moments[0].parts["audio"] < 1e-3  # the very vector (cosine distance ~ 0)


def test_near_video_and_near_image_find_the_window_they_were_cut_from(moments, recordings: Path) -> None:
    collection, _ = moments
    data = (recordings / "dashcam.mp4").read_bytes()
    window = 11
    cut = media.lossless_video_cut(data, window * 10 * FPS, (window + 1) * 10 * FPS)
    seen = search_moments(collection, QueryInput.of(InputKind.VIDEO, cut), part="visual")
    assert seen.groups[0].source == "dashcam.mp4" and seen.groups[0].moments[0].segment == window
    assert seen.groups[0].moments[0].parts["visual"] < 1e-3
    with av.open(io.BytesIO(data)) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == window * 10 * FPS + 3)
        picture = io.BytesIO()
        frame.to_image().save(picture, format="PNG")
    by_image = search_moments(collection, QueryInput.of(InputKind.IMAGE, picture.getvalue()), part="visual")
    assert by_image.groups[0].source == "dashcam.mp4" and by_image.groups[0].moments[0].segment == window


def test_the_soundtrack_is_found_by_what_is_heard(moments, recordings: Path) -> None:
    collection, _ = moments
    sound, rate = media.decoded_audio(str(recordings / "dashcam.mp4"))
    window = 6
    heard = media.float_wav_bytes(sound[:, window * 10 * rate:(window + 1) * 10 * rate], rate)
    result = search_moments(collection, QueryInput.of(InputKind.AUDIO, heard), part="audio")
    assert result.groups[0].source == "dashcam.mp4"
    assert result.groups[0].moments[0].segment == window and set(result.groups[0].moments[0].parts) == {"audio"}


def test_filters_restrict_moments(moments, recordings: Path) -> None:
    collection, _ = moments
    query = QueryInput.of(InputKind.AUDIO, _window_wav(recordings, 3))
    only_video = search_moments(collection, query, where=["media=video"])
    assert {g.source for g in only_video.groups} == {"dashcam.mp4"}
    late = search_moments(collection, query, where=["start>=100", "speaker=Ada"], per_file=5)
    assert {g.source for g in late.groups} == {"lecture.wav"}
    assert all(m.start >= 100 for g in late.groups for m in g.moments) and len(late.groups[0].moments) == 5


def test_hybrid_and_the_cli_json(moments, cli) -> None:
    collection, _ = moments
    code, out, err = cli("search", "--collection", collection.name, "--moments", "--text", "barking dogs",
                         "--hybrid-alpha", "0.3", "--per-file", "2", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["operator"] == "hybrid" and answer["metric"] == "score"
    assert answer["files"][0]["source"] == "lecture.wav"  # the keywords are in its title
    assert all({"start", "end", "segment", "parts"} <= set(m) for m in answer["files"][0]["moments"])
    code, out, err = cli("search", "--collection", collection.name, "--moments", "--text", "rain", "--limit", "2")
    assert code == 0, err
    assert "moments grouped by file" in out and "–" in out  # start–end times per moment


def test_sigkill_midway_then_rerun_leaves_every_segment_exactly_once(client, weaviate_server, vectorizer,
                                                                     tmp_path: Path, collection_name: str) -> None:
    folder = tmp_path / "long"
    folder.mkdir()
    seconds = 900.0
    (folder / "night.wav").write_bytes(media.wav_bytes(media.window_tone(seconds, 16000, 10.0, seed=31), 16000))
    collection = create_collection(client, make_moments_spec(collection_name))
    argv = [sys.executable, "-m", "imagebind_vectorizer", "ingest", str(folder), "--collection", collection_name,
            "--segments", "10s", "--batch-size", "2", "--no-progress", "--weaviate-url", weaviate_server.url,
            "--weaviate-grpc-port", str(weaviate_server.grpc_port), "--server-grpc", vectorizer.grpc_address]
    process = subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while count(collection) < 6:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "the ingest did not start inserting"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
    landed = count(collection)
    assert 6 <= landed < 90, landed  # killed midway
    result = subprocess.run(argv, env=subprocess_env(), capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    stored = [o.properties for o in collection.iterator(return_properties=["segment", "part", "last"])]
    assert Counter((p["segment"], p["part"]) for p in stored) == {(i, "audio"): 1 for i in range(90)}
    assert [p["segment"] for p in stored if p["last"]] == [89]
    # what a rerun reads back, paged by window number (small pages: the paging itself is exercised)
    from weaviate.classes.query import Filter

    from imagebind_vectorizer.weaviate.ingest.moments import _fetch_all

    paged = list(_fetch_all(collection, Filter.by_property("media").equal("audio"), page=7))
    assert sorted(o.properties["segment"] for o in paged) == list(range(90))


def test_a_corrupted_stretch_is_reported_and_the_rest_lands(client, weaviate_server, vectorizer, tmp_path: Path,
                                                            collection_name: str) -> None:
    folder = tmp_path / "damaged"
    folder.mkdir()
    clean = media.encoded_audio(media.window_tone(60.0, 48000, 10.0, seed=41), 48000, "ogg", "libopus")
    broken = bytearray(clean)
    start, length = int(len(clean) * 0.45), len(clean) // 25
    broken[start:start + length] = np.random.default_rng(9).integers(0, 256, length, dtype=np.uint8).tobytes()
    (folder / "storm.ogg").write_bytes(bytes(broken))
    (folder / "empty.wav").write_bytes(b"")
    collection = create_collection(client, make_moments_spec(collection_name))
    result = _ingest(weaviate_server, vectorizer, folder, collection_name)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = [line for line in result.stdout.splitlines() if line.startswith("  storm.ogg:")]
    assert problems and all("could not be decoded" in p and "segment" in p for p in problems)
    assert "  empty.wav: empty file (0 bytes)" in result.stdout
    damaged = len(problems)
    assert count(collection) == 6 - damaged
    stored = {o.properties["segment"] for o in collection.iterator(return_properties=["segment"])}
    assert {0, 5} <= stored  # before and after the damage


def test_a_file_swapped_for_a_link_out_of_the_folder_after_its_check_is_not_streamed(
        client, vectorizer, tmp_path: Path, collection_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder may change while the ingest runs. A file is checked, hashed and streamed through
    the one handle opened: replaced meanwhile by a link to a file outside the folder, it is still
    the file inside that is stored (the path was opened again for the stream, so the outside file's
    segments went to Weaviate under the inside file's name and hash)."""
    import hashlib

    from imagebind_vectorizer.client.segments import SegmentClient
    from imagebind_vectorizer.moments import WindowSpec
    from imagebind_vectorizer.weaviate.ingest import moments as ingest

    folder = tmp_path / "shared"
    folder.mkdir()
    inside = media.wav_bytes(media.window_tone(30.0, 16000, 10.0, seed=51), 16000)
    (folder / "talk.wav").write_bytes(inside)
    secret = tmp_path / "private.wav"
    secret.write_bytes(media.wav_bytes(media.window_tone(60.0, 16000, 10.0, seed=52), 16000))
    collection = create_collection(client, make_moments_spec(collection_name))
    look_up = ingest.stored_windows

    def swapped_first(*args: object) -> object:  # runs after the file's checks, before its stream
        (folder / "talk.wav").unlink()
        (folder / "talk.wav").symlink_to(secret)
        return look_up(*args)

    monkeypatch.setattr(ingest, "stored_windows", swapped_first)
    with SegmentClient(vectorizer.grpc_address) as server:
        report = ingest.ingest_moments(collection, folder, server, spec=WindowSpec(10.0),
                                       profile=server.preprocessing(), progress=False)
    assert report.ok, report
    stored = [o.properties for o in collection.iterator(return_properties=["segment", "sha256", "source"])]
    assert sorted(p["segment"] for p in stored) == [0, 1, 2], "the 30-s file's windows, not the 60-s outsider's"
    assert {(p["sha256"], p["source"]) for p in stored} == {(hashlib.sha256(inside).hexdigest(), "talk.wav")}
