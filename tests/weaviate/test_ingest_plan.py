"""Planning an ingest (no server): folder, sidecar and manifest hints, groups, metadata, and the
problems a bad sidecar or manifest makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.errors import WeaviateSideError
from imagebind_vectorizer.weaviate.ingest import build_object, plan_folder
from tests import media
from tests.helpers import write_files

PICTURE = media.picture(64, 48, seed=3)


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


def test_walk_order_hidden_files_and_the_manifest_itself(tmp_path: Path):
    folder = write_files(tmp_path, {
        "b/z.png": b"z", "a.png": b"a", "b/a.png": b"b", ".git/config": b"x", "b/.cache/x.png": b"x",
        "list.csv": "file,title\na.png,first\n",
    })
    planned, problems = plan_folder(folder, folder / "list.csv")
    assert problems == []
    assert [p.label for p in planned] == ["a.png", "b/a.png", "b/z.png"]  # sorted, hidden skipped, manifest not
    assert planned[0].metadata == {"title": "first"} and planned[1].metadata == {}
    assert planned[0].files[0].hint is None


def test_manifest_wins_over_sidecar_and_absolute_paths_inside_the_folder_are_accepted(tmp_path: Path):
    folder = write_files(tmp_path, {
        "x.png": b"x", "x.png.json": '{"title": "from sidecar", "place": "here", "modality": "depth"}',
        "list.csv": f"path,title,modality\n{tmp_path / 'x.png'},from manifest,thermal\n",
    })
    (planned,), _ = plan_folder(folder, folder / "list.csv")
    assert planned.metadata == {"title": "from manifest", "place": "here"}
    assert planned.files[0].hint is InputKind.THERMAL


def test_a_missing_folder_is_an_error(tmp_path: Path):
    with pytest.raises(WeaviateSideError, match="is not a folder"):
        plan_folder(tmp_path / "nope")
