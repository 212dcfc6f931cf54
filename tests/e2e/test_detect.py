"""Kind detection from bytes and folder planning (hints, sidecars, manifest, groups). No server."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import numpy as np
import pytest
from weaviate.util import generate_uuid5

from imagebind_vectorizer.modality import InputKind
from imagebind_vectorizer.weaviate.detect import sniff
from imagebind_vectorizer.weaviate.errors import WeaviateSideError
from imagebind_vectorizer.weaviate.ingest import build_object, plan_folder, resolve_kind
from tests import media
from tests.e2e.support import write_files

PICTURE = media.picture(64, 48, seed=3)


@pytest.mark.parametrize(("data", "kind", "fmt"), [
    (media.encode_image(PICTURE, "JPEG"), InputKind.IMAGE, "jpeg"),
    (media.encode_image(PICTURE, "PNG"), InputKind.IMAGE, "png"),
    (media.image_variants()["gif-animated"], InputKind.IMAGE, "gif"),
    (media.encode_image(PICTURE, "WEBP"), InputKind.IMAGE, "webp"),
    (media.encode_image(PICTURE, "BMP"), InputKind.IMAGE, "bmp"),
    (media.encode_image(PICTURE, "TIFF"), InputKind.IMAGE, "tiff"),
    (media.audio_bytes("wav", 0.5), InputKind.AUDIO, "wav"),
    (media.audio_bytes("flac", 0.5), InputKind.AUDIO, "flac"),
    (media.audio_bytes("mp3", 0.5), InputKind.AUDIO, "mp3"),
    (media.audio_bytes("ogg-opus", 0.5), InputKind.AUDIO, "ogg"),
    (media.audio_bytes("m4a-aac", 0.5), InputKind.AUDIO, "m4a"),  # an MP4 container with only a sound track
    (media.video_bytes(0.5, 4, 64, 48, "mp4", "libx264"), InputKind.VIDEO, "mp4"),
    (media.video_bytes(0.5, 4, 64, 48, "webm", "libvpx-vp9"), InputKind.VIDEO, "webm"),
    (media.video_bytes(0.5, 4, 64, 48, "matroska", "libx264"), InputKind.VIDEO, "mkv"),
    (media.video_bytes(0.5, 4, 64, 48, "avi", "mpeg4"), InputKind.VIDEO, "avi"),
    (media.imu_csv(media.imu_samples(50)), InputKind.IMU, "csv"),
    (media.imu_csv(media.imu_samples(50), header=None), InputKind.IMU, "csv"),
    (media.imu_csv(media.imu_samples(50), extra_columns=True), InputKind.IMU, "csv"),
    (media.imu_npy(media.imu_samples(50)), InputKind.IMU, "npy"),
    (b"A caption, with commas, in plain text.\nSecond line.", InputKind.TEXT, "txt"),
    (b"name,city,notes\nana,lisboa,likes sea\n", InputKind.TEXT, "txt"),
], ids=["jpeg", "png", "gif", "webp", "bmp", "tiff", "wav", "flac", "mp3", "ogg", "m4a", "mp4", "webm", "mkv", "avi",
        "csv", "csv-no-header", "csv-timestamps", "npy", "text", "text-csv"])
def test_sniff_tells_kinds_apart_by_content(data: bytes, kind: InputKind, fmt: str):
    detected = sniff(data)
    assert detected is not None
    assert (detected.kind, detected.format) == (kind, fmt)


def test_sniff_gives_up_on_unknown_bytes():
    assert sniff(b"") is None
    assert sniff(bytes(range(256)) * 4) is None
    assert sniff(np.random.default_rng(0).bytes(4096)) is None


def test_a_misleading_extension_does_not_matter(tmp_path: Path):
    folder = write_files(tmp_path, {"song.jpg": media.audio_bytes("wav", 0.5), "photo.wav": media.image_bytes("PNG")})
    planned, problems = plan_folder(folder)
    assert not problems
    built = {p.label: build_object(p, {}) for p in planned}
    assert built["song.jpg"].properties["modalities"] == ["audio"] and "audio" in built["song.jpg"].properties
    assert built["photo.wav"].properties["modalities"] == ["image"] and "image" in built["photo.wav"].properties


def test_plan_applies_folder_sidecar_and_manifest_hints_and_groups(tmp_path: Path):
    gray = media.encode_image(PICTURE.convert("L"), "PNG")
    folder = write_files(tmp_path, {
        "maps/Depth/a.png": gray,  # any folder level, any case
        "b.png": gray, "b.png.json": '{"modality": "thermal", "title": "warm"}',
        "c.png": gray, "c.json": '{"modality": "depth"}',  # the stem sidecar
        "d.png": gray,
        "e.wav": media.audio_bytes("wav", 0.5), "f.png": media.image_bytes("PNG", 32, 24),
        ".hidden.png": gray, "notes.json": '{"not": "a sidecar of anything"}',
        "list.csv": "file,modality,group,rating\nd.png,thermal,,5\ne.wav,,g1,\nf.png,,g1,4\nmissing.png,,,\n",
    })
    planned, problems = plan_folder(folder, folder / "list.csv")
    by_label = {p.label: p for p in planned}
    assert set(by_label) == {"maps/Depth/a.png", "b.png", "c.png", "d.png", "e.wav + f.png"}
    assert [str(p) for p in problems] == ["missing.png: listed in the manifest but not found in the folder"]
    kinds = {label: build_object(p, {"rating": "int"}).properties["modalities"] for label, p in by_label.items()}
    assert kinds == {"maps/Depth/a.png": ["depth"], "b.png": ["text", "thermal"], "c.png": ["depth"],
                     "d.png": ["thermal"], "e.wav + f.png": ["audio", "image"]}
    group = build_object(by_label["e.wav + f.png"], {"rating": "int"})
    assert group.properties["rating"] == 4
    assert group.properties["source"] == "e.wav; f.png"
    assert build_object(by_label["b.png"], {}).properties["title"] == "warm"


def test_uuids_come_from_the_content_hash(tmp_path: Path):
    data = media.image_bytes("PNG", 40, 30, seed=9)
    folder = write_files(tmp_path, {"one.png": data, "copy/two.png": data})
    planned, _ = plan_folder(folder)
    built = [build_object(p, {}) for p in planned]
    assert {b.uuid for b in built} == {generate_uuid5(hashlib.sha256(data).hexdigest())}
    assert built[0].properties["image"] == base64.b64encode(data).decode()


def test_hints_that_contradict_the_content_are_refused():
    image = sniff(media.image_bytes("PNG", 32, 24))
    audio = sniff(media.audio_bytes("wav", 0.5))
    assert resolve_kind(image, InputKind.DEPTH) is InputKind.DEPTH
    with pytest.raises(WeaviateSideError, match="thermal, which must be an image file, but the content is audio"):
        resolve_kind(audio, InputKind.THERMAL)
    with pytest.raises(WeaviateSideError, match="marked as video but the content is image"):
        resolve_kind(image, InputKind.VIDEO)
    with pytest.raises(WeaviateSideError, match="unrecognised content"):
        resolve_kind(None, None)
    assert resolve_kind(None, InputKind.AUDIO) is InputKind.AUDIO  # trust the hint when the bytes say nothing


def test_reserved_keys_and_bad_sidecars_are_reported(tmp_path: Path):
    folder = write_files(tmp_path, {
        "a.png": media.image_bytes("PNG", 32, 24), "a.png.json": '{"image": "sneaky"}',
        "b.png": media.image_bytes("PNG", 32, 24, seed=2), "b.png.json": "{not json",
        "c.png": media.image_bytes("PNG", 32, 24, seed=3), "c.png.json": '{"modality": "smell"}',
    })
    planned, problems = plan_folder(folder)
    assert planned == []
    reasons = {p.source: p.reason for p in problems}
    assert "'image' is filled from the files themselves" in reasons["a.png"]
    assert "not readable JSON" in reasons["b.png"]
    assert "unknown input kind 'smell'" in reasons["c.png"]


@pytest.mark.parametrize(("manifest", "message"), [
    ("path_missing,title\na.png,x\n", "needs a column named one of file, path, filename"),
    ("file,title\n../outside.png,x\n", "lies outside"),
    (b"file,title\n\xff\xfe.png,x\n", "is not UTF-8 text"),
])
def test_a_bad_manifest_is_explained(tmp_path: Path, manifest: str | bytes, message: str):
    folder = write_files(tmp_path, {"a.png": media.image_bytes("PNG", 32, 24), "list.csv": manifest})
    with pytest.raises(WeaviateSideError, match=message):
        plan_folder(folder, folder / "list.csv")
