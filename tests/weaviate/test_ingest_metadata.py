"""Metadata of an ingested file (no server), as README states it: a sidecar JSON and the CSV
manifest both give properties, the manifest wins where both set one, and `a;b` in a manifest cell
is an array for an array property."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagebind_vectorizer.weaviate.ingest import build_object, plan_folder
from tests import media
from tests.helpers import write_files

SCHEMA = {"title": "text", "place": "text", "rating": "int", "tags": "text[]", "scores": "number[]"}


@pytest.mark.parametrize("sidecar", ["photo.png.json", "photo.json"])
def test_the_manifest_wins_over_the_sidecar_and_cells_with_semicolons_are_arrays(tmp_path: Path,
                                                                                 sidecar: str) -> None:
    folder = write_files(tmp_path, {
        "photo.png": media.image_bytes("PNG", 32, 24, seed=4),
        sidecar: '{"title": "from the sidecar", "place": "the sidecar\'s place", "rating": 1, "tags": ["old"]}',
        "list.csv": "file,title,rating,tags,scores\nphoto.png,from the manifest,5,red;green; blue,0.5;2\n",
    })
    planned, problems = plan_folder(folder, folder / "list.csv")
    assert not problems and len(planned) == 1
    properties = build_object(planned[0], SCHEMA).properties
    assert properties["title"] == "from the manifest"
    assert properties["rating"] == 5
    assert properties["tags"] == ["red", "green", "blue"]
    assert properties["scores"] == [0.5, 2.0]
    assert properties["place"] == "the sidecar's place"  # what the manifest does not set, the sidecar still gives


def test_an_empty_manifest_cell_leaves_the_sidecars_value(tmp_path: Path) -> None:
    folder = write_files(tmp_path, {
        "photo.png": media.image_bytes("PNG", 32, 24, seed=4),
        "photo.png.json": '{"title": "from the sidecar"}',
        "list.csv": "file,title,rating\nphoto.png,,3\n",
    })
    planned, _ = plan_folder(folder, folder / "list.csv")
    properties = build_object(planned[0], SCHEMA).properties
    assert (properties["title"], properties["rating"]) == ("from the sidecar", 3)
