"""Ingesting a folder of mixed media into a multi2vec-bind collection, by concern: planning the
objects (plan.py), building each (objects.py), checking it against the collection's vectors
(checks.py), inserting (insert.py), and the run that ties them together (folder.py)."""

from imagebind_vectorizer.weaviate.ingest.checks import empty_vectors, schema_warnings, weight_shift
from imagebind_vectorizer.weaviate.ingest.folder import IngestReport, format_report, ingest_folder
from imagebind_vectorizer.weaviate.ingest.objects import BuiltObject, build_object, convert_value, resolve_kind
from imagebind_vectorizer.weaviate.ingest.plan import PlannedObject, Problem, SourceFile, plan_folder

__all__ = [
    "BuiltObject",
    "IngestReport",
    "PlannedObject",
    "Problem",
    "SourceFile",
    "build_object",
    "convert_value",
    "empty_vectors",
    "format_report",
    "ingest_folder",
    "plan_folder",
    "resolve_kind",
    "schema_warnings",
    "weight_shift",
]
