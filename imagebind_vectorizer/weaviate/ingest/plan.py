"""Planning an ingest: which objects a folder makes, before any file is read or anything is sent.

* Each file is one object, except that files sharing a `group` become one object (e.g. an image and
  its sound).
* Depth and thermal maps are images with a hint: `"modality"` in a sidecar JSON or a manifest column,
  or a `depth/` or `thermal/` folder anywhere in the file's path.
* Metadata comes from a sidecar JSON (`photo.jpg.json`, else `photo.json`) and from an optional
  CSV manifest (a `file` column with paths relative to the folder; every other column is a
  property; the manifest wins over sidecars). The keys `modality` and `group` are instructions,
  not properties.
* Symbolic links are not followed out of the folder: a link to a file elsewhere is reported and
  skipped (its bytes would otherwise end up in Weaviate), and linked folders are not entered,
  unless `follow_symlinks` (`ingest --follow-symlinks`). Links that stay inside are read as usual.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

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
    #: the folder the file must stay inside when read (None: symbolic links are followed anywhere)
    confined_to: Path | None = None

    def open(self) -> BinaryIO:
        """The file, opened for reading. The folder may have changed since planning: what was opened
        is checked after the opening (the file the resolved path names now, inside the folder, must be
        the very file opened), so a link swapped in or out around the check cannot slip an outside
        file through. Raises OSError if the file leads out of its folder."""
        handle = self.path.open("rb")
        try:
            if self.confined_to is not None:
                real = self.path.resolve()
                if not real.is_relative_to(self.confined_to.resolve()) or \
                        not os.path.samestat(os.fstat(handle.fileno()), real.stat()):
                    raise OSError(f"it became a symbolic link out of {self.confined_to}")
        except BaseException:
            handle.close()
            raise
        return handle

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()


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


def outside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symbolic link resolved, lies outside `root`."""
    return not path.resolve().is_relative_to(root.resolve())


def walk(root: Path, *, follow_symlinks: bool = False) -> Iterator[Path]:
    """Files under root in a stable order, hidden files and folders skipped. Linked folders are
    entered only with `follow_symlinks` (each real folder once, so a link loop ends)."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
        if follow_symlinks:
            identity = (os.stat(dirpath).st_dev, os.stat(dirpath).st_ino)
            if identity in seen:
                dirnames[:] = []
                continue
            seen.add(identity)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name
        if not follow_symlinks:  # os.walk lists linked folders but does not enter them: say so
            for name in dirnames:
                if (Path(dirpath) / name).is_symlink() and outside(Path(dirpath) / name, root):
                    yield Path(dirpath) / name


def plan_folder(root: Path, manifest: Path | None = None, *,
                follow_symlinks: bool = False) -> tuple[list[PlannedObject], list[Problem]]:
    """The objects a folder makes, and the problems found while planning (not yet read or sent)."""
    root = Path(root)
    if not root.is_dir():
        raise WeaviateSideError(f"{root} is not a folder")
    problems: list[Problem] = []
    manifest_rows = read_manifest(manifest, root) if manifest else {}
    skip = {manifest.resolve()} if manifest else set()
    files = []
    for path in walk(root, follow_symlinks=follow_symlinks):
        if path.resolve() in skip:
            continue
        if not follow_symlinks and outside(path, root):
            what = "folder" if path.is_dir() else "file"
            problems.append(Problem(path.relative_to(root).as_posix(), f"a symbolic link to a {what} outside "
                                    f"{root}; not followed (--follow-symlinks to include it)"))
            continue
        files.append(path)
    names = {p for p in files}
    sources: list[SourceFile] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() == ".json":
            continue  # sidecars (and any other JSON) describe files; they are not objects
        source = SourceFile(path, rel, confined_to=None if follow_symlinks else root)
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
