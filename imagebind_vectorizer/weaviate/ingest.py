"""Ingest a folder of mixed media into a multi2vec-bind collection.

* Each file's kind is decided from its bytes (`detect.sniff`). Depth and thermal maps are images
  with a hint: `"modality"` in a sidecar JSON or a manifest column, or a `depth/` or `thermal/`
  folder anywhere in the file's path.
* Metadata comes from a sidecar JSON (`photo.jpg.json`, else `photo.json`) and from an optional
  CSV manifest (a `file` column with paths relative to the folder; every other column is a
  property; the manifest wins over sidecars). The keys `modality` and `group` are instructions,
  not properties: files sharing a `group` become one object (e.g. an image and its sound).
  Manifest strings are converted to the collection's property types (`a;b` for arrays).
* A file's object UUID is `generate_uuid5(sha256(bytes))` (for a group: over its members'
  hashes), so running again never duplicates anything and an interrupted run resumes: objects that
  already exist are looked up batch by batch and skipped.
* Objects go in with `insert_many` (one gRPC batch per `batch_size` objects, smaller when the
  payload would pass `max_batch_bytes`). Weaviate vectorizes each object through our server while
  the call waits and answers per object; every object it rejects is reported with Weaviate's
  message (which relays our server's), never dropped.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagebind_vectorizer.kinds import WEAVIATE_KIND_ORDER, InputKind
from imagebind_vectorizer.weaviate.client import first_line
from imagebind_vectorizer.weaviate.collections import (
    BOOKKEEPING_PROPERTIES,
    MEDIA_PROPERTIES,
    MODULE_FIELD_KEYS,
    TEXT_PROPERTIES,
    CollectionInfo,
    describe,
)
from imagebind_vectorizer.weaviate.detect import Detected, sniff
from imagebind_vectorizer.weaviate.errors import WeaviateSideError

if TYPE_CHECKING:
    from weaviate.collections import Collection

log = logging.getLogger(__name__)

HINT_FOLDERS: dict[str, InputKind] = {"depth": InputKind.DEPTH, "thermal": InputKind.THERMAL}
CONTROL_KEYS = ("modality", "group")
MANIFEST_PATH_COLUMNS = ("file", "path", "filename")
#: Weaviate's default gRPC message limit is 104,858,000 bytes; stay well below it per call.
DEFAULT_MAX_BATCH_BYTES = 48 * 1024 * 1024
MAX_OBJECT_BYTES = 96 * 1024 * 1024
IMAGE_LIKE = (InputKind.IMAGE, InputKind.DEPTH, InputKind.THERMAL)


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


@dataclass
class IngestReport:
    planned: int = 0
    inserted: int = 0
    existing: int = 0
    duplicates: list[Problem] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    aborted: str | None = None
    uuids: dict[str, str] = field(default_factory=dict)  # object label -> uuid, for objects built

    @property
    def ok(self) -> bool:
        return not self.failed and self.aborted is None

    @property
    def not_attempted(self) -> int:
        return max(0, self.planned - self.inserted - self.existing - len(self.duplicates) - len(self.failed))


# Planning -----------------------------------------------------------------------------------------
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


# Building objects ---------------------------------------------------------------------------------
@dataclass
class BuiltObject:
    planned: PlannedObject
    uuid: str
    properties: dict[str, Any]
    payload_bytes: int


def resolve_kind(detected: Detected | None, hint: InputKind | None) -> InputKind:
    if hint is None:
        if detected is None:
            raise WeaviateSideError("unrecognised content: not an image, audio, video, IMU (CSV/.npy) or text file")
        return detected.kind
    if hint in IMAGE_LIKE:
        if detected is None or detected.kind is not InputKind.IMAGE:
            found = detected.kind.value if detected else "unrecognised content"
            raise WeaviateSideError(f"marked as {hint.value}, which must be an image file, but the content is {found}")
        return hint
    if detected is None or detected.kind is hint or {detected.kind, hint} <= {InputKind.TEXT, InputKind.IMU}:
        return hint
    raise WeaviateSideError(f"marked as {hint.value} but the content is {detected.kind.value} ({detected.format})")


def convert_value(value: Any, data_type: str | None, name: str) -> Any:
    """Manifest cells are strings; give Weaviate the property's own type."""
    if not isinstance(value, str) or data_type is None:
        return value
    base = data_type.removesuffix("[]")
    if data_type.endswith("[]"):
        return [convert_value(v.strip(), base, name) for v in value.split(";") if v.strip()]
    try:
        if base == "int":
            return int(value)
        if base == "number":
            return float(value)
        if base == "boolean":
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return lowered in ("true", "1", "yes")
    except ValueError:
        raise WeaviateSideError(f"{name}={value!r} is not a valid {base}") from None
    return value


def build_object(planned: PlannedObject, property_types: Mapping[str, str]) -> BuiltObject:
    from weaviate.util import generate_uuid5

    properties: dict[str, Any] = {}
    hashes: list[str] = []
    kinds: list[InputKind] = []
    formats: list[str] = []
    payload = 0
    for source in sorted(planned.files, key=lambda s: s.rel):
        try:
            data = source.path.read_bytes()
        except OSError as exc:
            raise WeaviateSideError(f"{source.rel}: cannot read: {exc.strerror or exc}") from None
        detected = sniff(data)
        try:
            kind = resolve_kind(detected, source.hint)
        except WeaviateSideError as exc:
            raise WeaviateSideError(f"{source.rel}: {exc}") from None
        if kind in kinds:
            raise WeaviateSideError(f"{source.rel}: the object already has a {kind.value} file; "
                                    "a group holds at most one file per kind")
        digest = hashlib.sha256(data).hexdigest()
        if kind is InputKind.TEXT:
            try:
                properties["text"] = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise WeaviateSideError(f"{source.rel}: text files must be UTF-8") from None
        else:
            properties[kind.value] = base64.b64encode(data).decode("ascii")
        payload += len(data) * 4 // 3 + 4
        kinds.append(kind)
        hashes.append(f"{kind.value}:{digest}")
        formats.append(detected.format if detected else kind.value)
    for key, value in planned.metadata.items():
        if key == "text" and "text" in properties:
            raise WeaviateSideError(f"{planned.label}: has both a text file and a 'text' value in its metadata")
        properties[key] = convert_value(value, property_types.get(key), key)
    if payload > MAX_OBJECT_BYTES:
        raise WeaviateSideError(f"{planned.label}: {payload / 2**20:.0f} MiB of base64 is too large for one Weaviate "
                                "gRPC message (about 100 MB by default, GRPC_MAX_MESSAGE_SIZE)")
    sha = hashes[0].split(":", 1)[1] if len(hashes) == 1 else \
        hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()
    present = set(kinds) | ({InputKind.TEXT} if any(properties.get(p) for p in TEXT_PROPERTIES) else set())
    properties.update({
        "source": "; ".join(sorted(f.rel for f in planned.files)),
        "sha256": sha,
        "modalities": sorted(k.value for k in present),
        "format": "+".join(formats),
    })
    return BuiltObject(planned, generate_uuid5(sha), properties, payload)


# Warnings about how Weaviate will vectorize ----------------------------------------------------------
def schema_warnings(info: CollectionInfo) -> list[str]:
    warnings = []
    bad = info.ignored_imu_keys()
    if bad:
        warnings.append(f"collection {info.name}: vector(s) {', '.join(bad)} list IMU fields under 'IMUFields' (the "
                        "weaviate-client's imu_fields= spelling), which Weaviate ignores: IMU data will not be "
                        "vectorized. Create the collection with `imagebind-vectorizer collection create` "
                        "(it writes 'imuFields').")
    if not info.vectors:
        warnings.append(f"collection {info.name} has no multi2vec-bind vector; objects will not be vectorized")
    return warnings


def vector_fields(info: CollectionInfo) -> dict[str, set[str]]:
    """vector name -> the properties Weaviate vectorizes it from (only keys Weaviate reads)."""
    return {name: {p for key in MODULE_FIELD_KEYS.values() for p in cfg.get(key) or []}
            for name, cfg in info.vectors.items()}


def empty_vectors(info: CollectionInfo, properties: Mapping[str, Any]) -> list[str]:
    """Vectors this object has no field for. Weaviate would store such an object without that
    vector and report 'insert called with nil-vector' (a later run would then find it "present")."""
    filled = {k for k, v in properties.items() if isinstance(v, str) and v}
    return [name for name, fields in vector_fields(info).items() if not fields & filled]


def weight_shift(info: CollectionInfo, properties: Mapping[str, Any]) -> list[str]:
    """Weighted vectors for which Weaviate would apply the wrong weights to this object: it takes
    weights by position over all configured fields, but vectors only for the fields present."""
    shifted = []
    for name, cfg in info.vectors.items():
        weights_cfg = cfg.get("weights") or {}
        if not weights_cfg:
            continue
        order: list[tuple[str, float]] = []
        present: list[str] = []
        for kind in WEAVIATE_KIND_ORDER:
            key = MODULE_FIELD_KEYS[kind]
            fields = list(cfg.get(key) or [])
            weights = list(weights_cfg.get(key) or [])
            order += list(zip(fields, weights, strict=False))
            present += sorted(p for p in fields if isinstance(properties.get(p), str) and properties.get(p))
        if len(present) < 2:
            continue  # one vector: the weight only scales it
        intended = dict(order)
        applied = [w for _, w in order]
        if any(i >= len(applied) or intended.get(p) != applied[i] for i, p in enumerate(present)):
            shifted.append(name)
    return shifted


# Inserting ----------------------------------------------------------------------------------------
def existing_ids(collection: Collection, uuids: Sequence[str], vectors: Sequence[str] = ()) -> set[str]:
    """The uuids already stored *with* every one of `vectors` (Weaviate keeps an object whose
    vector-index insert failed, without that vector; such an object counts as missing)."""
    from weaviate.classes.query import Filter

    if not uuids:
        return set()
    result = collection.query.fetch_objects(filters=Filter.by_id().contains_any(list(uuids)), limit=len(uuids),
                                            return_properties=["sha256"], include_vector=bool(vectors))
    return {str(o.uuid) for o in result.objects
            if all((o.vector or {}).get(name) for name in vectors)}


def _insert(collection: Collection, batch: list[BuiltObject]) -> dict[int, str]:
    """Insert; index -> error message for each object Weaviate rejected."""
    import weaviate
    from weaviate.classes.data import DataObject

    objects = [DataObject(properties=b.properties, uuid=b.uuid) for b in batch]
    try:
        result = collection.data.insert_many(objects)
    except weaviate.exceptions.WeaviateInsertManyAllFailedError as exc:
        messages = _all_failed_reasons(str(exc))
        if len(batch) == 1 or len(messages) == 1:
            return dict.fromkeys(range(len(batch)), messages[0])
        # The client keeps only the set of messages when every object failed; one at a time maps them.
        errors: dict[int, str] = {}
        for index, built in enumerate(batch):
            for message in _insert(collection, [built]).values():
                errors[index] = message
        return errors
    return {index: error.message for index, error in result.errors.items()}


def _all_failed_reasons(text: str) -> list[str]:
    """The distinct messages in the client's WeaviateInsertManyAllFailedError, one per line."""
    marker = "Here is the set of all errors:"
    if marker not in text:
        return [first_line(text)]
    return [first_line(line) for line in text.split(marker, 1)[1].strip().splitlines() if line.strip()] or \
        [first_line(text)]


def explain(reason: str) -> str:
    """Weaviate's message, plus what to do when the cause is clear."""
    lowered = reason.lower()
    if "vectorize" in lowered and ("connection refused" in lowered or "no such host" in lowered
                                   or "connect:" in lowered):
        return (reason + " -- Weaviate cannot reach its vectorizer (BIND_INFERENCE_API); start the "
                "imagebind-vectorizer server again and rerun: objects already stored are skipped")
    if "nil-vector" in lowered:
        return reason + " -- the object holds none of that vector's fields; Weaviate stored it without the vector"
    if "deadline" in lowered or "timeout" in lowered:
        return reason + " -- raise MODULES_CLIENT_TIMEOUT in Weaviate or --timeout here, or use a smaller --batch-size"
    return reason


def ingest_folder(collection: Collection, root: Path, *, manifest: Path | None = None, batch_size: int = 32,
                  max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES, overwrite: bool = False, progress: bool = True,
                  on_problem: Callable[[Problem], None] | None = None) -> IngestReport:
    """Plan, build and insert; see the module docstring. Never raises for a bad file: every
    problem is in the report. Raises WeaviateSideError only before anything was sent."""
    import weaviate
    from tqdm import tqdm

    if batch_size < 1:
        raise WeaviateSideError("--batch-size must be at least 1")
    info = describe(collection)
    report = IngestReport()
    report.warnings += schema_warnings(info)
    planned, problems = plan_folder(root, manifest)
    report.planned = len(planned) + len(problems)
    notify = on_problem or (lambda problem: None)

    def fail(problem: Problem) -> None:
        report.failed.append(problem)
        notify(problem)

    for problem in problems:
        fail(problem)
    seen: dict[str, str] = {}
    shifted: dict[str, int] = {}
    bar = tqdm(total=report.planned, initial=len(problems), unit="obj", desc=f"ingest into {info.name}",
               disable=not progress, dynamic_ncols=True)
    try:
        for start in range(0, len(planned), batch_size):
            chunk = planned[start:start + batch_size]
            built: list[BuiltObject] = []
            for item in chunk:
                try:
                    obj = build_object(item, info.property_types)
                except WeaviateSideError as exc:
                    fail(Problem(item.label, str(exc).removeprefix(item.label + ": ")))
                    continue
                report.uuids[item.label] = obj.uuid
                if obj.uuid in seen:
                    report.duplicates.append(Problem(item.label, f"same content as {seen[obj.uuid]}"))
                    continue
                seen[obj.uuid] = item.label
                empty = empty_vectors(info, obj.properties)
                if empty:
                    fields = vector_fields(info)
                    fail(Problem(item.label, "; ".join(
                        f"has none of the fields of vector {name!r} ({', '.join(sorted(fields[name])) or 'none'}), "
                        "so Weaviate would store it without that vector" for name in empty)))
                    continue
                for name in weight_shift(info, obj.properties):
                    shifted[name] = shifted.get(name, 0) + 1
                built.append(obj)
            if not overwrite and built:
                try:
                    present = existing_ids(collection, [b.uuid for b in built], list(info.vectors))
                except weaviate.exceptions.WeaviateBaseError as exc:
                    report.aborted = f"checking which objects exist failed: {first_line(str(exc))}"
                    break
                report.existing += sum(1 for b in built if b.uuid in present)
                built = [b for b in built if b.uuid not in present]
            for sub in _split(built, max_batch_bytes):
                try:
                    errors = _insert(collection, sub)
                except weaviate.exceptions.WeaviateBaseError as exc:
                    report.aborted = f"inserting a batch failed: {explain(first_line(str(exc)))}"
                    break
                for index, obj in enumerate(sub):
                    if index in errors:
                        fail(Problem(obj.planned.label, explain(errors[index])))
                    else:
                        report.inserted += 1
            if report.aborted:
                break
            bar.update(len(chunk))
    finally:
        bar.close()
    for name, count in shifted.items():
        report.warnings.append(
            f"vector {name!r} has per-field weights, and {count} object(s) lack some of its fields: Weaviate applies "
            "weights by position over all configured fields, so those objects' vectors do not follow the weights")
    return report


def _split(objects: list[BuiltObject], max_bytes: int) -> Iterator[list[BuiltObject]]:
    batch: list[BuiltObject] = []
    size = 0
    for obj in objects:
        if batch and size + obj.payload_bytes > max_bytes:
            yield batch
            batch, size = [], 0
        batch.append(obj)
        size += obj.payload_bytes
    if batch:
        yield batch


def format_report(report: IngestReport, collection: str) -> str:
    lines = [f"{collection}: {report.inserted} inserted, {report.existing} already present, "
             f"{len(report.duplicates)} duplicate file(s), {len(report.failed)} failed "
             f"(of {report.planned} planned)"]
    if report.duplicates:
        lines += [f"  duplicate: {d}" for d in report.duplicates]
    if report.failed:
        lines.append("failed:")
        lines += [f"  {p}" for p in report.failed]
    if report.aborted:
        lines.append(f"stopped early: {report.aborted}")
        lines.append(f"  {report.not_attempted} object(s) were not attempted; rerun the same command to resume")
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)
