"""Ingesting long audio and video as moments: each file is streamed to our server's
VectorizeSegments, and every segment's parts become objects with their vectors provided (see
weaviate/moments.py for the layout).

* Idempotent: object UUIDs derive from (content sha256, window, settings, part), so a second run
  writes nothing new; a file whose windows 0..last are all stored is skipped without decoding.
* Resumable: a run killed midway left a prefix of a file's windows (objects are inserted in window
  order, a batch at a time); the rerun asks the server to start at the first missing window, and
  whatever it sends again lands on the same UUIDs. Every segment ends up stored exactly once.
* Damage: a window the server could not decode is reported (file, window, times, reason) and the
  rest of the file goes on; a file that breaks off keeps the segments before the damage and is
  reported. A later run retries what is missing.
* Files shorter than `segment_over` seconds (if given) and files that are not audio or video are
  skipped and listed: they belong in a whole-file collection (`ingest` without --segments)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from imagebind_vectorizer.client.segments import SegmentClient
from imagebind_vectorizer.errors import ImageBindError, InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.moments import Segment, WindowSpec
from imagebind_vectorizer.weaviate.client import one_line
from imagebind_vectorizer.weaviate.collections import describe
from imagebind_vectorizer.weaviate.detect import sniff
from imagebind_vectorizer.weaviate.errors import WeaviateSideError
from imagebind_vectorizer.weaviate.ingest.objects import convert_value, resolve_kind
from imagebind_vectorizer.weaviate.ingest.plan import PlannedObject, Problem, plan_folder
from imagebind_vectorizer.weaviate.moments import PARTS, moment_uuid, require_moments, settings_key

if TYPE_CHECKING:
    from weaviate.collections import Collection

#: bytes read to tell a file's kind (Matroska and MP4 name their tracks near the start)
SNIFF_BYTES = 1 << 20


@dataclass
class MomentsReport:
    files: int = 0
    segmented: int = 0  # files that went (at least partly) through the server this run
    complete: int = 0  # files found complete and skipped
    inserted: int = 0  # objects written this run
    skipped: list[Problem] = field(default_factory=list)  # not audio/video, too short, duplicates
    failed: list[Problem] = field(default_factory=list)
    aborted: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and self.aborted is None


@dataclass
class _File:
    """A file to segment, open: its bytes are hashed and streamed from this one handle, so what is
    stored under its sha256 is what was sent, whatever happens to the folder meanwhile."""

    planned: PlannedObject
    handle: BinaryIO
    rel: str
    kind: InputKind
    sha256: str
    metadata: dict[str, Any]


def ingest_moments(collection: Collection, root: Path, server: SegmentClient, *, spec: WindowSpec, profile: str,
                   manifest: Path | None = None, batch_size: int = 64, segment_over: float | None = None,
                   progress: bool = True, on_problem: Callable[[Problem], None] | None = None,
                   follow_symlinks: bool = False) -> MomentsReport:
    """Segment every audio and video file under `root` into the moment collection. Never raises
    for a bad file (it is in the report); raises WeaviateSideError only before anything was sent.
    Symbolic links out of `root` are reported, not read, unless `follow_symlinks`."""
    from tqdm import tqdm

    if batch_size < 1:
        raise WeaviateSideError("--batch-size must be at least 1")
    info = describe(collection)
    require_moments(info)
    notify = on_problem or (lambda problem: None)
    report = MomentsReport()
    planned, problems = plan_folder(root, manifest, follow_symlinks=follow_symlinks)
    for problem in problems:
        report.failed.append(problem)
        notify(problem)
    key = settings_key(spec, profile)
    seen: dict[str, str] = {}
    with tqdm(total=len(planned), unit="file", desc=f"moments into {info.name}", disable=not progress,
              dynamic_ncols=True) as bar:
        for item in planned:
            bar.update(1)
            report.files += 1
            try:
                source = _identify(item, info.property_types, segment_over)
            except _Skip as skip:
                report.skipped.append(Problem(item.label, str(skip)))
                continue
            except WeaviateSideError as exc:
                report.failed.append(problem := Problem(item.label, str(exc)))
                notify(problem)
                continue
            with source.handle:
                if source.sha256 in seen:
                    report.skipped.append(Problem(source.rel, f"same content as {seen[source.sha256]}"))
                    continue
                seen[source.sha256] = source.rel
                try:
                    _ingest_file(collection, server, source, spec, key, batch_size, report, notify)
                except _Abort as stop:
                    report.aborted = str(stop)
                    break
    return report


class _Skip(Exception):
    pass


class _Abort(Exception):
    pass


def _identify(item: PlannedObject, property_types: dict[str, str], segment_over: float | None) -> _File:
    if len(item.files) != 1:
        raise WeaviateSideError("groups are not segmented: give each recording its own file")
    source = item.files[0]
    try:
        handle = source.open()
    except OSError as exc:
        raise WeaviateSideError(f"cannot read: {exc.strerror or exc}") from None
    try:
        head = handle.read(SNIFF_BYTES)
        if not head:
            raise WeaviateSideError("empty file (0 bytes)")
        detected = sniff(head)
        try:
            kind = resolve_kind(detected, source.hint)
        except WeaviateSideError as exc:
            raise _Skip(f"not segmented: {exc}") from None
        if kind not in PARTS:
            raise _Skip(f"not segmented: a {kind.value} file (only audio and video become moments)")
        if segment_over is not None:
            seconds = _duration(handle)
            if seconds is not None and seconds <= segment_over:
                raise _Skip(f"not segmented: {seconds:.1f} s long, not over --segment-over {segment_over:g} s")
        metadata = {k: convert_value(v, property_types.get(k), k) for k, v in item.metadata.items()}
        unknown = [k for k in metadata if k not in property_types]
        if unknown:
            raise WeaviateSideError(f"metadata {', '.join(sorted(unknown))} has no property in the collection; "
                                    "create it with --property NAME:TYPE")
        return _File(item, handle, source.rel, kind, _sha256(handle), metadata)
    except BaseException:
        handle.close()
        raise


def _duration(handle: BinaryIO) -> float | None:
    import av

    try:
        handle.seek(0)
        with av.open(handle) as container:
            return container.duration / av.time_base if container.duration is not None else None
    except Exception:
        return None  # the server will say what is wrong with it


def _sha256(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    handle.seek(0)
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def stored_windows(collection: Collection, sha256: str, key: str) -> tuple[set[tuple[int, str]], int | None]:
    """(window, part) pairs stored for this file and settings, and the last window's index if the
    file was completed."""
    from weaviate.classes.query import Filter

    filters = Filter.all_of([Filter.by_property("sha256").equal(sha256), Filter.by_property("settingsKey").equal(key)])
    present: set[tuple[int, str]] = set()
    last = None
    for obj in _fetch_all(collection, filters):
        present.add((int(obj.properties["segment"]), str(obj.properties["part"])))
        if obj.properties.get("last"):
            last = int(obj.properties["segment"])
    return present, last


def _fetch_all(collection: Collection, filters: Any, page: int = 1000) -> Iterator[Any]:
    """Every object matching `filters` (a file's segments). Paged by window number rather than by
    offset: Weaviate refuses offsets past QUERY_MAXIMUM_RESULTS (10,000 by default), and a 4-hour
    file in 2-s windows has 14,400 objects."""
    from weaviate.classes.query import Filter

    total = collection.aggregate.over_all(filters=filters, total_count=True).total_count or 0
    seen, low = 0, 0
    while seen < total:
        in_range = Filter.all_of([filters, Filter.by_property("segment").greater_or_equal(low),
                                  Filter.by_property("segment").less_than(low + page)])
        result = collection.query.fetch_objects(filters=in_range, limit=2 * page,
                                                return_properties=["segment", "part", "last"])
        seen += len(result.objects)
        yield from result.objects
        low += page
        if low > 10_000_000:  # windows are numbered from 0; nothing is this far
            return


def _ingest_file(collection: Collection, server: SegmentClient, source: _File, spec: WindowSpec, key: str,
                 batch_size: int, report: MomentsReport, notify: Callable[[Problem], None]) -> None:
    import weaviate

    try:
        present, last = stored_windows(collection, source.sha256, key)
    except weaviate.exceptions.WeaviateBaseError as exc:
        raise _Abort(f"looking up what is stored of {source.rel} failed: {one_line(str(exc))}") from None
    windows = {index for index, _ in present}
    if last is not None and windows >= set(range(last + 1)):
        report.complete += 1
        return
    first_missing = next(i for i in range(len(windows) + 1) if i not in windows)
    report.segmented += 1
    pending: list[Any] = []
    previous: Segment | None = None
    problems: list[Problem] = []

    def flush() -> None:
        nonlocal pending
        if not pending:
            return
        _insert(collection, pending, source, report, notify)
        pending = []

    try:
        for segment in server.segments(source.handle, source.kind, spec, first_index=first_missing,
                                       item_id=source.rel):
            if previous is not None:
                pending += _objects(previous, source, spec, key, last=False, problems=problems)
                if len(pending) >= batch_size:
                    flush()
            previous = segment
        if previous is not None:  # the file went through whole: its final window is marked
            pending += _objects(previous, source, spec, key, last=True, problems=problems)
        flush()
    except InputError as exc:
        if previous is not None:
            pending += _objects(previous, source, spec, key, last=False, problems=problems)
        flush()
        problems.append(Problem(source.rel, str(exc)))
    except ImageBindError as exc:  # our server busy, unreachable or failing: stop, a rerun resumes
        flush()
        raise _Abort(f"{source.rel}: {exc}") from None
    except weaviate.exceptions.WeaviateBaseError as exc:
        raise _Abort(f"inserting segments of {source.rel} failed: {one_line(str(exc))}") from None
    for problem in problems:
        report.failed.append(problem)
        notify(problem)


def _objects(segment: Segment, source: _File, spec: WindowSpec, key: str, *, last: bool,
             problems: list[Problem]) -> list[Any]:
    from weaviate.classes.data import DataObject

    objects = []
    for kind, part in PARTS.items():
        if kind in segment.errors:
            problems.append(Problem(source.rel, str(segment.errors[kind])))
        if kind not in segment.vectors:
            continue
        properties = {
            **source.metadata, "source": source.rel, "sha256": source.sha256, "media": source.kind.value,
            "part": part, "start": float(segment.start), "end": float(segment.end), "segment": segment.index,
            "last": last, "windowSeconds": float(spec.seconds), "overlapSeconds": float(spec.overlap),
            "settingsKey": key,
        }
        uuid = moment_uuid(source.sha256, segment.index, segment.start, segment.end, key, part)
        objects.append(DataObject(properties=properties, uuid=uuid,
                                  vector={"moment": segment.vectors[kind].tolist()}))
    return objects


def _insert(collection: Collection, objects: list[Any], source: _File, report: MomentsReport,
            notify: Callable[[Problem], None]) -> None:
    result = collection.data.insert_many(objects)
    for index, error in result.errors.items():
        props = objects[index].properties
        problem = Problem(source.rel, f"segment {props['segment']} ({props['part']}): {error.message}")
        report.failed.append(problem)
        notify(problem)
    report.inserted += len(objects) - len(result.errors)


def format_moments_report(report: MomentsReport, collection: str) -> str:
    lines = [f"{collection}: {report.files} file(s): {report.segmented} segmented, {report.complete} already "
             f"complete, {len(report.skipped)} skipped, {len(report.failed)} problem(s); "
             f"{report.inserted} moment object(s) written"]
    lines += [f"  skipped: {p}" for p in report.skipped]
    if report.failed:
        lines.append("problems:")
        lines += [f"  {p}" for p in report.failed]
    if report.aborted:
        lines.append(f"stopped early: {report.aborted}")
        lines.append("  rerun the same command to resume: stored segments are kept and not computed again")
    return "\n".join(lines)
