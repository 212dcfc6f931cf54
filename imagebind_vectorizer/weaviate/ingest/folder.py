"""Ingest a folder of mixed media into a multi2vec-bind collection: plan (plan.py), build each
object (objects.py), check it against the collection's vectors (checks.py), insert (insert.py).

* Each file's kind is decided from its bytes (`detect.sniff`); depth and thermal maps need a hint.
* A file's object UUID is `generate_uuid5(sha256(bytes))` (for a group: over its members'
  hashes), so running again never duplicates anything and an interrupted run resumes: objects that
  already exist are looked up batch by batch and skipped.
* Objects go in with `insert_many` (one gRPC batch per `batch_size` objects, smaller when the
  payload would pass `max_batch_bytes`). Weaviate vectorizes each object through our server while
  the call waits and answers per object; every object it rejects is reported with Weaviate's
  message (which relays our server's), never dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imagebind_vectorizer.progress import bar, ticking
from imagebind_vectorizer.weaviate.client import one_line
from imagebind_vectorizer.weaviate.collections import CollectionInfo, describe
from imagebind_vectorizer.weaviate.errors import WeaviateSideError
from imagebind_vectorizer.weaviate.ingest.checks import empty_vectors, schema_warnings, vector_fields, weight_shift
from imagebind_vectorizer.weaviate.ingest.insert import DEFAULT_MAX_BATCH_BYTES, existing_ids, explain, insert, split
from imagebind_vectorizer.weaviate.ingest.objects import BuiltObject, build_object
from imagebind_vectorizer.weaviate.ingest.plan import PlannedObject, Problem, plan_folder

if TYPE_CHECKING:
    from weaviate.collections import Collection


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


def ingest_folder(collection: Collection, root: Path, *, manifest: Path | None = None, batch_size: int = 32,
                  max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES, overwrite: bool = False, progress: bool = True,
                  on_problem: Callable[[Problem], None] | None = None,
                  follow_symlinks: bool = False) -> IngestReport:
    """Plan, build and insert; see the module docstring. Never raises for a bad file: every
    problem is in the report (and passed to `on_problem` as it happens). Raises WeaviateSideError
    only before anything was sent. Symbolic links out of `root` are reported, not read, unless
    `follow_symlinks`. `progress`: a bar on stderr whose elapsed time keeps moving while Weaviate
    vectorizes a batch."""
    if batch_size < 1:
        raise WeaviateSideError("--batch-size must be at least 1")
    info = describe(collection)
    planned, problems = plan_folder(root, manifest, follow_symlinks=follow_symlinks)
    run = _Ingest(collection, info, overwrite=overwrite, max_batch_bytes=max_batch_bytes,
                  notify=on_problem or (lambda problem: None))
    run.report.planned = len(planned) + len(problems)
    run.report.warnings += schema_warnings(info)
    for problem in problems:
        run.fail(problem)
    with bar(run.report.planned, f"ingest into {info.name}", unit="obj", show=progress,
             initial=len(problems)) as shown, ticking(shown):
        for start in range(0, len(planned), batch_size):
            chunk = planned[start:start + batch_size]
            shown.set_postfix_str(f"vectorizing {len(chunk)}", refresh=False)
            run.insert(run.build(chunk))
            if run.report.aborted:
                break
            shown.update(len(chunk))
        shown.set_postfix_str("", refresh=False)
    run.report.warnings += run.shift_warnings()
    return run.report


@dataclass
class _Ingest:
    """One ingest's running state: the report, the objects seen so far (duplicates), and how many
    objects each weighted vector would get shifted weights for."""

    collection: Collection
    info: CollectionInfo
    overwrite: bool
    max_batch_bytes: int
    notify: Callable[[Problem], None]
    report: IngestReport = field(default_factory=IngestReport)
    seen: dict[str, str] = field(default_factory=dict)  # uuid -> label of the first object with it
    shifted: dict[str, int] = field(default_factory=dict)  # vector name -> objects

    def fail(self, problem: Problem) -> None:
        self.report.failed.append(problem)
        self.notify(problem)

    def build(self, chunk: list[PlannedObject]) -> list[BuiltObject]:
        """The chunk's objects that should be sent: built, not duplicates, fillable."""
        built: list[BuiltObject] = []
        for item in chunk:
            try:
                obj = build_object(item, self.info.property_types)
            except WeaviateSideError as exc:
                self.fail(Problem(item.label, str(exc).removeprefix(item.label + ": ")))
                continue
            self.report.uuids[item.label] = obj.uuid
            if obj.uuid in self.seen:
                self.report.duplicates.append(Problem(item.label, f"same content as {self.seen[obj.uuid]}"))
                continue
            self.seen[obj.uuid] = item.label
            empty = empty_vectors(self.info, obj.properties)
            if empty:
                fields = vector_fields(self.info)
                self.fail(Problem(item.label, "; ".join(
                    f"has none of the fields of vector {name!r} ({', '.join(sorted(fields[name])) or 'none'}), "
                    "so Weaviate would store it without that vector" for name in empty)))
                continue
            for name in weight_shift(self.info, obj.properties):
                self.shifted[name] = self.shifted.get(name, 0) + 1
            built.append(obj)
        return built

    def insert(self, built: list[BuiltObject]) -> None:
        """Insert what is not stored yet; on a Weaviate-side failure, record why and stop."""
        import weaviate

        if not self.overwrite and built:
            try:
                present = existing_ids(self.collection, [b.uuid for b in built], list(self.info.vectors))
            except weaviate.exceptions.WeaviateBaseError as exc:
                self.report.aborted = f"checking which objects exist failed: {one_line(str(exc))}"
                return
            self.report.existing += sum(1 for b in built if b.uuid in present)
            built = [b for b in built if b.uuid not in present]
        for batch in split(built, self.max_batch_bytes):
            try:
                errors = insert(self.collection, batch)
            except weaviate.exceptions.WeaviateBaseError as exc:
                self.report.aborted = f"inserting a batch failed: {explain(one_line(str(exc)))}"
                return
            for index, obj in enumerate(batch):
                if index in errors:
                    self.fail(Problem(obj.planned.label, explain(errors[index])))
                else:
                    self.report.inserted += 1

    def shift_warnings(self) -> list[str]:
        return [f"vector {name!r} has per-field weights, and {count} object(s) lack some of its fields: Weaviate "
                "applies weights by position over all configured fields, so those objects' vectors do not follow "
                "the weights" for name, count in self.shifted.items()]


def format_report(report: IngestReport, collection: str, *, list_failures: bool = True) -> str:
    """The summary; each failure on a line of its own, unless they were shown as they happened
    (`list_failures=False`: then only their count, so no failure is printed twice)."""
    failed = f"{len(report.failed)} failed" + (" (listed above)" if report.failed and not list_failures else "")
    lines = [f"{collection}: {report.inserted} inserted, {report.existing} already present, "
             f"{len(report.duplicates)} duplicate file(s), {failed} (of {report.planned} planned)"]
    if report.duplicates:
        lines += [f"  duplicate: {d}" for d in report.duplicates]
    if report.failed and list_failures:
        lines.append("failed:")
        lines += [f"  {p}" for p in report.failed]
    if report.aborted:
        lines.append(f"stopped early: {report.aborted}")
        lines.append(f"  {report.not_attempted} object(s) were not attempted; rerun the same command to resume")
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)
