"""Planning an ingest: which objects a folder makes, before any file is read or anything is sent.

* Each file is one object, except that files sharing a `group` become one object (e.g. an image and
  its sound).
* Depth and thermal maps are images with a hint: `"modality"` in a sidecar JSON or a manifest column,
  or a `depth/` or `thermal/` folder anywhere in the file's path.
* Metadata comes from a sidecar JSON (`photo.jpg.json`, else `photo.json`) and from an optional
  CSV manifest (a `file` column with paths relative to the folder; every other column is a
  property; the manifest wins over sidecars). The keys `modality` and `group` are instructions,
  not properties.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.collections import BOOKKEEPING_PROPERTIES, MEDIA_PROPERTIES
from imagebind_vectorizer.weaviate.errors import WeaviateSideError

HINT_FOLDERS: dict[str, InputKind] = {"depth": InputKind.DEPTH, "thermal": InputKind.THERMAL}
MANIFEST_PATH_COLUMNS = ("file", "path", "filename")


@dataclass
class SourceFile:
    path: Path
    rel: str
    hint: InputKind | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    group: str | None = None


@dataclass
class PlannedObject:
    key: str
    files: list[SourceFile]
    metadata: dict[str, Any]

    @property
    def label(self) -> str:
        return " + ".join(f.rel for f in self.files)


@dataclass
class Problem:
    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def parse_hint(value: Any, where: str) -> InputKind:
    try:
        return InputKind.parse(str(value))
    except ValueError as exc:
        raise WeaviateSideError(f"{where}: {exc}") from None


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeaviateSideError(f"sidecar {path.name}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise WeaviateSideError(f"sidecar {path.name}: expected a JSON object")
    return data


def read_manifest(manifest: Path, root: Path) -> dict[str, dict[str, str]]:
    """rel path -> row (without the path column); empty cells are dropped."""
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            path_column = next((c for c in MANIFEST_PATH_COLUMNS if c in columns), None)
            if path_column is None:
                raise WeaviateSideError(f"manifest {manifest}: needs a column named one of "
                                        f"{', '.join(MANIFEST_PATH_COLUMNS)} (paths relative to {root})")
            rows: dict[str, dict[str, str]] = {}
            for row in reader:
                clean = {(k or "").strip(): (v or "").strip() for k, v in row.items()
                         if k is not None and isinstance(v, str)}
                raw = clean.pop(path_column, "")
                if not raw:
                    continue
                rows[_manifest_path(raw, root, manifest, reader.line_num)] = {k: v for k, v in clean.items()
                                                                             if k and v != ""}
            return rows
    except OSError as exc:
        raise WeaviateSideError(f"cannot read manifest {manifest}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise WeaviateSideError(f"manifest {manifest} is not UTF-8 text") from None
    except csv.Error as exc:
        raise WeaviateSideError(f"manifest {manifest} is not valid CSV: {exc}") from None


def _manifest_path(raw: str, root: Path, manifest: Path, line: int) -> str:
    target = Path(raw)
    if target.is_absolute():
        try:
            return target.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise WeaviateSideError(f"manifest {manifest}, line {line}: {raw} lies outside {root}") from None
    rel = Path(os.path.normpath(raw))
    if rel.parts and rel.parts[0] == "..":
        raise WeaviateSideError(f"manifest {manifest}, line {line}: {raw} lies outside {root}")
    return rel.as_posix()


def walk(root: Path) -> Iterator[Path]:
    """Files under root in a stable order, hidden files and folders skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def plan_folder(root: Path, manifest: Path | None = None) -> tuple[list[PlannedObject], list[Problem]]:
    """The objects a folder makes, and the problems found while planning (not yet read or sent)."""
    root = Path(root)
    if not root.is_dir():
        raise WeaviateSideError(f"{root} is not a folder")
    problems: list[Problem] = []
    manifest_rows = read_manifest(manifest, root) if manifest else {}
    skip = {manifest.resolve()} if manifest else set()
    files = [p for p in walk(root) if p.resolve() not in skip]
    names = {p for p in files}
    sources: list[SourceFile] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() == ".json":
            continue  # sidecars (and any other JSON) describe files; they are not objects
        source = SourceFile(path, rel)
        for folder in reversed(Path(rel).parts[:-1]):
            if folder.lower() in HINT_FOLDERS:
                source.hint = HINT_FOLDERS[folder.lower()]
                break
        try:
            for sidecar in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
                if sidecar in names:
                    _apply(source, _read_sidecar(sidecar), f"sidecar {sidecar.name}")
                    break
            if rel in manifest_rows:
                _apply(source, dict(manifest_rows.pop(rel)), f"manifest row {rel}")
        except WeaviateSideError as exc:
            problems.append(Problem(rel, str(exc)))
            continue
        sources.append(source)
    for rel in manifest_rows:
        problems.append(Problem(rel, "listed in the manifest but not found in the folder"))

    objects: list[PlannedObject] = []
    groups: dict[str, PlannedObject] = {}
    for source in sources:
        if source.group is None:
            objects.append(PlannedObject(source.rel, [source], dict(source.metadata)))
            continue
        planned = groups.get(source.group)
        if planned is None:
            planned = groups[source.group] = PlannedObject(f"group {source.group}", [], {})
            objects.append(planned)
        planned.files.append(source)
        planned.metadata.update(source.metadata)
    return objects, problems


def _apply(source: SourceFile, data: Mapping[str, Any], where: str) -> None:
    data = dict(data)
    if "modality" in data:
        source.hint = parse_hint(data.pop("modality"), where)
    if "group" in data:
        source.group = str(data.pop("group"))
    for key in data:
        if key in MEDIA_PROPERTIES or key in BOOKKEEPING_PROPERTIES:
            raise WeaviateSideError(f"{where}: {key!r} is filled from the files themselves and cannot be set")
    source.metadata.update(data)
