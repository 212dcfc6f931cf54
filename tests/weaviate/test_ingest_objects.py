"""Building objects from planned ones (no server): kinds from content, hints checked against it,
UUIDs from the content hash, metadata typed by the schema (`convert_value`), the size limit."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from weaviate.util import generate_uuid5

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.detect import sniff
from imagebind_vectorizer.weaviate.errors import WeaviateSideError
from imagebind_vectorizer.weaviate.ingest import build_object, convert_value, plan_folder, resolve_kind
from imagebind_vectorizer.weaviate.ingest.objects import MAX_OBJECT_BYTES
from imagebind_vectorizer.weaviate.ingest.plan import PlannedObject, SourceFile
from tests import media
from tests.helpers import write_files


def test_a_misleading_extension_does_not_matter(tmp_path: Path):
    folder = write_files(tmp_path, {"song.jpg": media.audio_bytes("wav", 0.5), "photo.wav": media.image_bytes("PNG")})
    planned, problems = plan_folder(folder)
    assert not problems
    built = {p.label: build_object(p, {}) for p in planned}
    assert built["song.jpg"].properties["modalities"] == ["audio"] and "audio" in built["song.jpg"].properties
    assert built["photo.wav"].properties["modalities"] == ["image"] and "image" in built["photo.wav"].properties


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


@pytest.mark.parametrize(("value", "data_type", "expected"), [
    ("42", "int", 42), ("-3", "int", -3), ("2.5", "number", 2.5), ("1e3", "number", 1000.0),
    ("yes", "boolean", True), ("FALSE", "boolean", False), ("0", "boolean", False),
    ("a; b ;;c", "text[]", ["a", "b", "c"]), ("1;2", "int[]", [1, 2]), ("true;no", "boolean[]", [True, False]),
    ("2024-05-01", "date", "2024-05-01"),  # Weaviate parses dates itself
    ("anything", None, "anything"),  # not in the schema: Weaviate's auto-schema decides
    (7, "text", 7), (["x"], "text[]", ["x"]),  # sidecar JSON values are already typed
])
def test_convert_value_types_manifest_strings_by_the_schema(value, data_type, expected):
    assert convert_value(value, data_type, "p") == expected


@pytest.mark.parametrize(("value", "data_type"), [("4.5", "int"), ("many", "number"), ("maybe", "boolean"),
                                                  ("1;x", "int[]")])
def test_convert_value_names_the_property_and_the_type(value, data_type):
    with pytest.raises(WeaviateSideError, match=f"p={value.split(';')[-1]!r} is not a valid "
                                                 f"{data_type.removesuffix('[]')}"):
        convert_value(value, data_type, "p")


def test_a_group_holds_one_file_per_kind_and_text_once(tmp_path: Path):
    folder = write_files(tmp_path, {"a.wav": media.audio_bytes("wav", 0.3), "c.txt": "hello",
                                    "b.wav": media.audio_bytes("wav", 0.3, seed=2),
                                    "d.png": media.image_bytes("PNG", 16, 16)})

    def group(*names: str, **metadata: str) -> PlannedObject:
        return PlannedObject("g", [SourceFile(folder / n, n) for n in names], dict(metadata))

    with pytest.raises(WeaviateSideError, match="already has a audio file"):
        build_object(group("a.wav", "b.wav"), {})
    with pytest.raises(WeaviateSideError, match="both a text file and a 'text' value"):
        build_object(group("c.txt", "d.png", text="also"), {})
    both = build_object(group("c.txt", "d.png"), {})
    assert both.properties["text"] == "hello" and both.properties["modalities"] == ["image", "text"]
    digests = sorted([f"text:{hashlib.sha256(b'hello').hexdigest()}",
                      f"image:{hashlib.sha256((folder / 'd.png').read_bytes()).hexdigest()}"])
    assert both.properties["sha256"] == hashlib.sha256("\n".join(digests).encode()).hexdigest()
    assert both.uuid == generate_uuid5(both.properties["sha256"])


def test_unreadable_text_and_oversized_objects_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = write_files(tmp_path, {"latin1.txt": "caf\u00e9".encode("latin-1"), "big.png": media.image_bytes("PNG")})
    text = PlannedObject("t", [SourceFile(folder / "latin1.txt", "latin1.txt")], {})
    with pytest.raises(WeaviateSideError, match="text files must be UTF-8"):
        build_object(text, {})
    size = len((folder / "big.png").read_bytes())
    monkeypatch.setattr("imagebind_vectorizer.weaviate.ingest.objects.MAX_OBJECT_BYTES", size)  # base64 is 4/3
    big = PlannedObject("b", [SourceFile(folder / "big.png", "big.png")], {})
    with pytest.raises(WeaviateSideError, match="too large for one Weaviate gRPC message"):
        build_object(big, {})
    assert size < MAX_OBJECT_BYTES


def test_payload_bytes_count_the_base64(tmp_path: Path):
    data = media.image_bytes("PNG", 40, 30)
    folder = write_files(tmp_path, {"p.png": data})
    built = build_object(PlannedObject("p", [SourceFile(folder / "p.png", "p.png")], {}), {})
    assert built.payload_bytes >= len(base64.b64encode(data))
