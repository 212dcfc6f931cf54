"""Ingesting folders into the real Weaviate: kinds from content, hints, metadata, idempotence,
resuming after a kill, bad files, and our server going down in the middle."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from weaviate.util import generate_uuid5

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.collections import create_collection, make_spec
from imagebind_vectorizer.weaviate.errors import QueryError
from imagebind_vectorizer.weaviate.ingest import ingest_folder
from tests import media
from tests.e2e.support import gray_picture, subprocess_env
from tests.helpers import write_files

pytestmark = pytest.mark.weaviate


def count(collection) -> int:
    return collection.aggregate.over_all(total_count=True).total_count


def content_uuid(data: bytes) -> str:
    return generate_uuid5(hashlib.sha256(data).hexdigest())


@pytest.fixture
def mixed_folder(tmp_path: Path, samples) -> Path:
    folder = tmp_path / "mixed"
    files: dict[str, bytes | str] = {
        "photo.png": samples[InputKind.IMAGE][0],
        "photo.png.json": '{"title": "a photo", "year": 2021}',
        "scan.jpg": media.image_bytes("JPEG", 80, 60, seed=7),
        "sounds/tone.wav": samples[InputKind.AUDIO][0],
        "sounds/noise.flac": media.audio_bytes("flac", 1.0, seed=3),
        "clip.mp4": samples[InputKind.VIDEO][0],
        "depth/room.png": samples[InputKind.DEPTH][0],
        "heat.jpg": samples[InputKind.THERMAL][0],
        "heat.json": '{"modality": "thermal", "title": "a warm hand"}',
        "motion.csv": samples[InputKind.IMU][0],
        "motion2.npy": media.imu_npy(media.imu_samples(300, seed=4)),
        "notes.txt": "waves roll onto the beach at sunset",
        "pair/look.png": media.image_bytes("PNG", 64, 48, seed=8),
        "pair/listen.wav": media.audio_bytes("wav", 1.0, freq=990.0, seed=5),
        "manifest.csv": "file,title,year,group\n"
                        "scan.jpg,a scanned page,2020,\n"
                        "pair/look.png,a picture with its sound,,pair\n"
                        "pair/listen.wav,,2019,pair\n",
    }
    return write_files(folder, files)


def test_ingest_detects_kinds_applies_metadata_and_never_duplicates(client, cli, mixed_folder: Path,
                                                                    collection_name):
    code, out, err = cli("collection", "create", collection_name, "--property", "year:int")
    assert code == 0, err
    code, out, err = cli("ingest", str(mixed_folder), "--collection", collection_name,
                         "--manifest", str(mixed_folder / "manifest.csv"), "--batch-size", "4")
    assert code == 0, out + err
    assert f"{collection_name}: 11 inserted, 0 already present" in out

    collection = client.collections.get(collection_name)
    objects = {o.properties["source"]: o for o in collection.query.fetch_objects(limit=50).objects}
    kinds = {source: (o.properties["modalities"], o.properties["format"]) for source, o in objects.items()}
    assert kinds == {
        "photo.png": (["image", "text"], "png"),
        "scan.jpg": (["image", "text"], "jpeg"),
        "sounds/tone.wav": (["audio"], "wav"),
        "sounds/noise.flac": (["audio"], "flac"),
        "clip.mp4": (["video"], "mp4"),
        "depth/room.png": (["depth"], "png"),  # a depth/ folder
        "heat.jpg": (["text", "thermal"], "jpeg"),  # a sidecar {"modality": "thermal"}
        "motion.csv": (["imu"], "csv"),
        "motion2.npy": (["imu"], "npy"),
        "notes.txt": (["text"], "txt"),
        "pair/listen.wav; pair/look.png": (["audio", "image", "text"], "wav+png"),  # one object per group
    }
    assert objects["photo.png"].properties["title"] == "a photo"
    assert objects["photo.png"].properties["year"] == 2021  # sidecar JSON number
    assert objects["scan.jpg"].properties["year"] == 2020  # manifest string, typed by the schema
    assert objects["pair/listen.wav; pair/look.png"].properties["year"] == 2019
    assert objects["notes.txt"].properties["text"] == "waves roll onto the beach at sunset"
    assert str(objects["photo.png"].uuid) == content_uuid((mixed_folder / "photo.png").read_bytes())

    # the bookkeeping properties filter: text[] modalities, field-tokenized format
    code, out, err = cli("search", "--collection", collection_name, "--text", "anything", "--where",
                         "modalities=depth", "--json")
    assert code == 0, err
    assert [r["properties"]["source"] for r in json.loads(out)["results"]] == ["depth/room.png"]
    code, out, err = cli("search", "--collection", collection_name, "--imu", str(mixed_folder / "motion.csv"),
                         "--where", "format=npy", "--where", "year<2030", "--json")
    assert code == 0, err
    assert [r["properties"]["source"] for r in json.loads(out)["results"]] == []  # motion2.npy has no year
    code, out, err = cli("search", "--collection", collection_name, "--imu", str(mixed_folder / "motion.csv"),
                         "--where", "format=npy", "--json")
    assert [r["properties"]["source"] for r in json.loads(out)["results"]] == ["motion2.npy"]

    code, out, err = cli("ingest", str(mixed_folder), "--collection", collection_name,
                         "--manifest", str(mixed_folder / "manifest.csv"))
    assert code == 0, out + err
    assert f"{collection_name}: 0 inserted, 11 already present" in out
    assert count(collection) == 11


def test_an_interrupted_ingest_resumes_without_duplicates(client, weaviate_server, tmp_path: Path, collection_name):
    files = {f"img{i:02d}.png": media.image_bytes("PNG", 64, 48, seed=100 + i) for i in range(36)}
    files.update({f"clip{i}.mp4": media.video_bytes(1.0, 4, 64, 48, seed=50 + i) for i in range(4)})
    folder = write_files(tmp_path / "many", files)
    collection = create_collection(client, make_spec(collection_name))
    argv = [sys.executable, "-m", "imagebind_vectorizer", "ingest", str(folder), "--collection", collection_name,
            "--batch-size", "1", "--no-progress", "--weaviate-url", weaviate_server.url,
            "--weaviate-grpc-port", str(weaviate_server.grpc_port)]
    process = subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while count(collection) < 3:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "the ingest did not start inserting"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    landed = count(collection)
    assert 3 <= landed < len(files)  # killed midway

    result = subprocess.run(argv, env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    done = result.stdout.strip().splitlines()[-1]
    assert done.startswith(f"{collection_name}: {len(files) - landed} inserted, {landed} already present")
    assert count(collection) == len(files)
    stored = {str(o.uuid) for o in collection.iterator()}
    assert stored == {content_uuid(data) for data in files.values()}  # each file exactly once


def test_bad_files_are_reported_with_their_reason_and_the_rest_lands(client, cli, ours, samples, tmp_path: Path,
                                                                     collection_name):
    broken_png = b"\x89PNG\r\n\x1a\n" + b"definitely not the rest of a PNG" * 4
    folder = write_files(tmp_path / "bad", {
        "good.png": samples[InputKind.IMAGE][1],
        "good.wav": samples[InputKind.AUDIO][1],
        "broken.png": broken_png,
        "random.bin": bytes(range(7, 250, 3)) * 5,
        "depth/not-an-image.wav": samples[InputKind.AUDIO][2],
    })
    cli("collection", "create", collection_name)
    code, out, err = cli("ingest", str(folder), "--collection", collection_name)
    assert code == 1
    text = out + err
    failures = [line for line in err.splitlines() if line.startswith("failed: ")]
    assert len(failures) == 3, err  # each failure once, as it happens
    broken_line = next(line for line in failures if line.startswith("failed: broken.png: "))
    assert "fail with status 400" in broken_line and "images[0]" in broken_line  # our server's 400, via Weaviate
    with pytest.raises(QueryError) as direct:  # the same bytes sent straight to our server
        ours.vectorize({InputKind.IMAGE: [broken_png]})
    assert "(HTTP 400)" in str(direct.value)
    assert str(direct.value).split("(HTTP 400): ", 1)[1] in broken_line  # relayed word for word
    assert any(line.startswith("failed: random.bin: unrecognised content") for line in failures)
    assert any(line.startswith("failed: depth/not-an-image.wav: marked as depth, which must be an image file")
               for line in failures)
    assert f"{collection_name}: 2 inserted" in out and "3 failed (listed above)" in out
    assert "broken.png" not in out  # not repeated in the summary
    assert "Traceback" not in text
    assert count(client.collections.get(collection_name)) == 2


def test_failures_are_listed_once_each_in_short_lines_and_no_payload_is_printed(client, cli, weaviate_server,
                                                                               tmp_path: Path, collection_name):
    """Large objects that all fail: weaviate-client logs a failed batch with every object in it (base64),
    and re-enables its logger when it first imports its logger module; none of that may reach the
    terminal, and each failure is listed once."""
    broken = {f"broken{i}.png": b"\x89PNG\r\n\x1a\n" + os.urandom(200_000) for i in range(5)}
    folder = write_files(tmp_path / "large", {**broken, "note.txt": "a note that lands"})
    cli("collection", "create", collection_name)
    result = subprocess.run(
        [sys.executable, "-m", "imagebind_vectorizer", "ingest", str(folder), "--collection", collection_name,
         "--weaviate-url", weaviate_server.url, "--weaviate-grpc-port", str(weaviate_server.grpc_port)],
        env={**subprocess_env(), "WEAVIATE_LOG_LEVEL": "INFO"}, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert f"{collection_name}: 1 inserted" in result.stdout and "5 failed" in result.stdout
    for name in broken:
        assert output.count(name) == 1, f"{name} is listed {output.count(name)} times"
    assert max(len(line) for line in output.splitlines()) <= 800
    assert len(output) < 5 * 800 + 1500, f"{len(output)} characters of output for 5 failures"


def test_vectorizer_down_is_reported_and_a_rerun_completes_after_restart(client, cli, vectorizer, samples,
                                                                        tmp_path: Path, collection_name):
    folder = write_files(tmp_path / "down", {
        "a.png": media.image_bytes("PNG", 64, 48, seed=61),
        "b.wav": samples[InputKind.AUDIO][2],
        "c.txt": "a note written while the vectorizer was down",
    })
    cli("collection", "create", collection_name)
    collection = client.collections.get(collection_name)
    vectorizer.stop()
    try:
        code, out, err = cli("ingest", str(folder), "--collection", collection_name)
        assert code == 1
        text = out + err
        assert "connection refused" in text
        assert "Weaviate cannot reach its vectorizer (BIND_INFERENCE_API)" in text
        assert "0 inserted" in out and "3 failed" in out
        assert "Traceback" not in text
        assert count(collection) == 0
    finally:
        vectorizer.start(timeout=120)  # same port: Weaviate only checks readiness at its own start
    code, out, err = cli("ingest", str(folder), "--collection", collection_name)
    assert code == 0, out + err
    assert f"{collection_name}: 3 inserted" in out
    assert count(collection) == 3


def test_objects_that_cannot_fill_a_named_vector_are_refused_before_sending(client, samples, tmp_path: Path,
                                                                           collection_name):
    spec = make_spec(collection_name, named_vectors=["visual=image,video", "words=text,title"])
    collection = create_collection(client, spec)
    folder = write_files(tmp_path / "named", {
        "captioned.png": samples[InputKind.IMAGE][2],
        "captioned.png.json": '{"title": "a captioned picture"}',
        "bare.png": media.image_bytes("PNG", 64, 48, seed=71),
    })
    report = ingest_folder(collection, folder, progress=False)
    assert report.inserted == 1
    assert [p.source for p in report.failed] == ["bare.png"]
    assert "none of the fields of vector 'words' (text, title)" in report.failed[0].reason
    assert count(collection) == 1


def test_weights_that_an_incomplete_object_would_shift_are_warned_about(client, samples, tmp_path: Path,
                                                                        collection_name):
    spec = make_spec(collection_name, named_vectors=["mix=text,image,audio"], weights="image=0.6,text=0.3,audio=0.1")
    collection = create_collection(client, spec)
    folder = write_files(tmp_path / "weights", {
        "full.png": samples[InputKind.IMAGE][0],
        "full.wav": samples[InputKind.AUDIO][0],
        "half.png": gray_picture(81, "PNG"),
        "half.wav": samples[InputKind.AUDIO][1],
        "manifest.csv": "file,text,group\nfull.png,complete,full\nfull.wav,,full\nhalf.png,,half\nhalf.wav,,half\n",
    })
    report = ingest_folder(collection, folder, manifest=folder / "manifest.csv", progress=False)
    assert report.ok and report.inserted == 2
    assert len(report.warnings) == 1
    assert "vector 'mix' has per-field weights, and 1 object(s) lack some of its fields" in report.warnings[0]


def test_links_out_of_the_folder_stay_out_of_weaviate_unless_asked(client, cli, tmp_path: Path, collection_name):
    outside = write_files(tmp_path / "elsewhere", {"secret.txt": "a private note from another folder"})
    folder = write_files(tmp_path / "linked", {"note.txt": "a public note"})
    (folder / "secret.txt").symlink_to(outside / "secret.txt")
    cli("collection", "create", collection_name)
    code, out, err = cli("ingest", str(folder), "--collection", collection_name)
    assert code == 1 and "secret.txt: a symbolic link to a file outside" in out + err
    collection = client.collections.get(collection_name)
    texts = {o.properties["text"] for o in collection.query.fetch_objects(limit=10).objects}
    assert texts == {"a public note"}
    code, out, err = cli("ingest", str(folder), "--collection", collection_name, "--follow-symlinks")
    assert code == 0, out + err
    texts = {o.properties["text"] for o in collection.query.fetch_objects(limit=10).objects}
    assert texts == {"a public note", "a private note from another folder"}
