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


# Symbolic links ----------------------------------------------------------------------------------------
@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    """A folder to ingest holding links: to a file and a folder outside, to a sidecar outside, and
    to a file inside; plus the outside folder they point at."""
    outside = write_files(tmp_path / "elsewhere", {
        "secret.txt": "not for the collection", "photos/far.png": media.image_bytes("PNG", 32, 24, seed=9),
        "meta.json": '{"owner": "someone else"}'})
    folder = write_files(tmp_path / "in", {"a.png": media.image_bytes("PNG", 32, 24, seed=1), "sub/b.txt": "hello"})
    (folder / "secret.txt").symlink_to(outside / "secret.txt")
    (folder / "far").symlink_to(outside / "photos", target_is_directory=True)
    (folder / "a.png.json").symlink_to(outside / "meta.json")
    (folder / "b-again.txt").symlink_to(folder / "sub" / "b.txt")
    return folder, outside


def test_links_out_of_the_folder_are_reported_and_not_read(linked: tuple[Path, Path]):
    folder, _ = linked
    planned, problems = plan_folder(folder)
    assert [p.label for p in planned] == ["a.png", "b-again.txt", "sub/b.txt"]
    assert planned[0].metadata == {}, "a sidecar linked from elsewhere is not applied"
    reasons = {p.source: p.reason for p in problems}
    assert set(reasons) == {"a.png.json", "far", "secret.txt"}
    assert all("outside" in r and "--follow-symlinks" in r for r in reasons.values())
    assert "a symbolic link to a folder" in reasons["far"]
    texts = [build_object(p, {}).properties.get("text") for p in planned]
    assert "not for the collection" not in texts


def test_follow_symlinks_reads_them(linked: tuple[Path, Path]):
    folder, _ = linked
    planned, problems = plan_folder(folder, follow_symlinks=True)
    assert problems == []
    labels = [p.label for p in planned]
    assert labels == ["a.png", "b-again.txt", "secret.txt", "far/far.png", "sub/b.txt"]  # os.walk: files first
    assert planned[0].metadata == {"owner": "someone else"}
    assert build_object(planned[labels.index("secret.txt")], {}).properties["text"] == "not for the collection"


def test_a_link_loop_ends(tmp_path: Path):
    folder = write_files(tmp_path / "in", {"a.txt": "a"})
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    planned, problems = plan_folder(folder, follow_symlinks=True)
    assert [p.label for p in planned] == ["a.txt"] and problems == []
    planned, problems = plan_folder(folder)
    assert [p.label for p in planned] == ["a.txt"] and problems == []  # a link inside the folder: nothing lost


def test_a_file_swapped_for_a_link_after_planning_is_not_read(tmp_path: Path):
    outside = write_files(tmp_path / "elsewhere", {"secret.txt": "not for the collection"})
    folder = write_files(tmp_path / "in", {"note.txt": "harmless"})
    planned, _ = plan_folder(folder)
    (folder / "note.txt").unlink()
    (folder / "note.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(WeaviateSideError, match="became a symbolic link"):
        build_object(planned[0], {})
