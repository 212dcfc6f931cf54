"""Moment collections: long audio and video stored as timed segments, and searches that point into
the file.

How a segment is stored. One object per (segment, part): the part `visual` holds what the window
shows (the video recipe inside the window), the part `audio` what it sounds like (an audio file, or
a video's soundtrack). Every object has exactly one vector, in the single named vector `moment`,
configured with multi2vec-bind (fields `video` and `audio`, which are never filled: the vectors are
provided by the ingester, the media bytes stay in the files) so that every near* query still goes
through Weaviate's module and our server. ImageBind puts pictures and sounds in one space, so one
index serves "what is seen", "what is heard" and both; the `part` property tells them apart.

Why not two named vectors (`visual`, `audio`) on one object: Weaviate v1.39 asks the module for
every configured named vector an object does not provide, gets nothing for a segment without a
picture (an audio file) or without sound (a silent video), and fails the insert with "insert
called with nil-vector" -- after indexing, in map order, some of the object's other vectors and
not others. One vector per object never has a missing vector, and a silent video or an audio file
is simply a file with one part.

Properties: `source` (path relative to the ingested folder), `sha256` (of the file), `media`
(audio or video: what the file is), `part`, `start`/`end` (seconds), `segment` (window number),
`last` (true on the file's final window, written once the whole file went through: a rerun skips
a file whose windows 0..last are all present), `windowSeconds`/`overlapSeconds` and `settingsKey`
(the window settings and preprocessing profile the vectors were made with), `title`/`text` (from
the file's metadata, searchable for hybrid queries) and the user's metadata properties."""

from __future__ import annotations

import json
import uuid as uuid_module
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.moments import WindowSpec, settings_digest
from imagebind_vectorizer.weaviate.client import weaviate_errors
from imagebind_vectorizer.weaviate.collections import (
    MODULE,
    TEXT_PROPERTIES,
    CollectionInfo,
    describe,
    parse_property,
    user_property,
)
from imagebind_vectorizer.weaviate.errors import QueryError, SchemaError
from imagebind_vectorizer.weaviate.search import QueryInput, parse_where

if TYPE_CHECKING:
    from weaviate.collections import Collection

MOMENT_VECTOR = "moment"
PARTS: dict[InputKind, str] = {InputKind.VIDEO: "visual", InputKind.AUDIO: "audio"}
#: properties the ingester fills; they cannot be user metadata
MOMENT_PROPERTIES: dict[str, str] = {
    "source": "TEXT", "sha256": "TEXT", "media": "TEXT", "part": "TEXT", "start": "NUMBER", "end": "NUMBER",
    "segment": "INT", "last": "BOOL", "windowSeconds": "NUMBER", "overlapSeconds": "NUMBER", "settingsKey": "TEXT",
}
#: blob properties named in the module config, never filled (no media bytes in Weaviate)
MODULE_FIELDS: dict[str, str] = {kind.facts.module_fields_key: kind.value for kind in PARTS}
_NAMESPACE = uuid_module.UUID("6d6f6d65-6e74-4073-9567-6d656e747321")


def settings_key(spec: WindowSpec, profile: str) -> str:
    """What a segment's vectors depend on besides the file: window settings and preprocessing."""
    return f"{spec.key()}-{settings_digest(spec.seconds, spec.overlap, profile)}"


def moment_uuid(sha256: str, window_index: int, start: float, end: float, key: str, part: str) -> str:
    """Derived from (content, window, settings, part): ingesting again finds the same objects."""
    return str(uuid_module.uuid5(_NAMESPACE, f"{sha256}|{window_index}|{start:.6f}|{end:.6f}|{key}|{part}"))


# The collection --------------------------------------------------------------------------------------
@dataclass
class MomentsSpec:
    name: str
    properties: list[tuple[str, str]] = field(default_factory=list)  # user metadata (name, PROPERTY_TYPES key)
    description: str | None = None

    def validate(self) -> None:
        from imagebind_vectorizer.weaviate.collections import CollectionSpec

        reserved = set(MOMENT_PROPERTIES) | set(MODULE_FIELDS.values()) | set(TEXT_PROPERTIES)
        for name, _ in self.properties:
            if name in reserved:
                raise SchemaError(f"property {name!r} is built into moment collections "
                                  f"({', '.join(sorted(reserved))}); choose another name")
        CollectionSpec(self.name, properties=list(self.properties)).validate()  # names and types

    def create_arguments(self) -> dict[str, Any]:
        from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances

        props = [Property(name=name, data_type=DataType.TEXT, index_filterable=True, index_searchable=True)
                 for name in TEXT_PROPERTIES]
        props += [Property(name=name, data_type=DataType.BLOB) for name in MODULE_FIELDS.values()]
        for name, type_name in MOMENT_PROPERTIES.items():
            text = type_name == "TEXT"
            props.append(Property(name=name, data_type=DataType[type_name], index_filterable=True,
                                  tokenization=Tokenization.FIELD if text else None,
                                  index_range_filters=type_name in ("NUMBER", "INT") or None))
        props += [user_property(name, type_name) for name, type_name in self.properties]
        vector = Configure.Vectors.custom(
            name=MOMENT_VECTOR, module_name=MODULE,
            module_config={key: [prop] for key, prop in MODULE_FIELDS.items()},
            vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE))
        description = self.description or "moments: timed segments of long audio and video (imagebind-vectorizer)"
        return {"name": self.name, "description": description, "properties": props, "vector_config": [vector]}


def make_moments_spec(name: str, *, properties: Sequence[str] = (), description: str | None = None) -> MomentsSpec:
    spec = MomentsSpec(name, [parse_property(p) for p in properties], description)
    spec.validate()
    return spec


def is_moments(info: CollectionInfo) -> bool:
    return set(info.vectors) == {MOMENT_VECTOR} and all(p in info.property_types for p in ("start", "end", "part"))


def require_moments(info: CollectionInfo) -> None:
    if not is_moments(info):
        raise SchemaError(f"collection {info.name} is not a moment collection (vector {MOMENT_VECTOR!r}, properties "
                          f"start, end, part); create one with `imagebind-vectorizer collection create "
                          f"{info.name}Moments --moments`")


# Search ---------------------------------------------------------------------------------------------
@dataclass
class Moment:
    start: float
    end: float
    segment: int
    parts: dict[str, float]  # part -> its distance (or hybrid score)
    uuid: str

    @property
    def best(self) -> float:
        return min(self.parts.values())


@dataclass
class MomentGroup:
    """One file's best moments, best first."""

    source: str
    sha256: str
    media: str
    moments: list[Moment]
    properties: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "sha256": self.sha256, "media": self.media, "properties": self.properties,
                "moments": [{"start": m.start, "end": m.end, "segment": m.segment, "parts": m.parts,
                             "uuid": m.uuid} for m in self.moments]}


@dataclass
class MomentsResult:
    operator: str
    inputs: list[str]
    metric: str  # "distance" (smaller is better) or "score" (hybrid: larger is better)
    groups: list[MomentGroup]

    def to_json(self) -> dict[str, Any]:
        return {"operator": self.operator, "inputs": self.inputs, "metric": self.metric,
                "files": [g.to_json() for g in self.groups]}


def search_moments(collection: Collection, query: QueryInput, *, where: Sequence[str] = (),
                   hybrid_alpha: float | None = None, files: int = 5, per_file: int = 3,
                   part: str | None = None) -> MomentsResult:
    """The best moments for one input, grouped by source file with Weaviate's group-by: at most
    `files` files, `per_file` moments each, best first. `part` ("visual" or "audio") searches only
    what is seen or only what is heard; without it a window's parts are merged, scored by its
    best part. Filters (`where`) and hybrid keyword search work as for whole objects."""
    from weaviate.classes.query import Filter, GroupBy, MetadataQuery, NearMediaType

    if files < 1 or per_file < 1:
        raise QueryError("--limit and --per-file must be at least 1")
    info = describe(collection)
    require_moments(info)
    filters = parse_where(where, info.property_types)
    if part is not None:
        if part not in PARTS.values():
            raise QueryError(f"--part must be one of {', '.join(PARTS.values())}")
        by_part = Filter.by_property("part").equal(part)
        filters = by_part if filters is None else Filter.all_of([filters, by_part])
    returned = [p for p, t in info.property_types.items() if t != "blob"]
    # Each window can come back once per part; ask for enough objects to fill `per_file` windows.
    group_by = GroupBy(prop="sha256", objects_per_group=per_file * (1 if part else 2), number_of_groups=files)
    common: dict[str, Any] = dict(limit=files * per_file * 2 * 4, filters=filters, target_vector=MOMENT_VECTOR,
                                  return_properties=returned, group_by=group_by,
                                  return_metadata=MetadataQuery(distance=True, score=True))
    label = f"{query.kind.value}:{query.label}"
    metric = "distance"
    with weaviate_errors(f"moments {query.kind.facts.near_operator} query"):
        if hybrid_alpha is not None:
            if query.kind is not InputKind.TEXT:
                raise QueryError("--hybrid-alpha combines keyword and vector search and needs a --text query")
            if not 0.0 <= hybrid_alpha <= 1.0:
                raise QueryError("--hybrid-alpha must be between 0 (keywords only) and 1 (vector only)")
            # Weaviate's group-by returns distances only, and hybrid ranks by score: group here,
            # keeping Weaviate's ranking, over enough hits to fill the files asked for.
            del common["group_by"]
            common["limit"] = files * per_file * 2 * 10
            found = collection.query.hybrid(str(query.data()), alpha=hybrid_alpha, **common)
            operator, metric = "hybrid", "score"
            response = _grouped(found.objects, files)
        elif query.kind is InputKind.TEXT:
            response = collection.query.near_text(str(query.data()), **common)
            operator = query.kind.facts.near_operator
        else:
            response = collection.query.near_media(query.base64(), NearMediaType(query.kind.value), **common)
            operator = query.kind.facts.near_operator
    groups = [_group(group, metric, per_file) for group in response.groups.values()]
    groups.sort(key=lambda g: _rank(g.moments[0], metric) if g.moments else float("inf"))
    return MomentsResult(operator, [label], metric, groups)


@dataclass
class _Group:
    name: str
    objects: list[Any]


@dataclass
class _Grouped:
    groups: dict[str, _Group]


def _grouped(objects: Sequence[Any], files: int) -> _Grouped:
    groups: dict[str, _Group] = {}
    for obj in objects:
        sha = str(obj.properties.get("sha256"))
        if sha not in groups and len(groups) >= files:
            continue
        groups.setdefault(sha, _Group(sha, [])).objects.append(obj)
    return _Grouped(groups)


def _value(obj: Any, metric: str) -> float:
    value = obj.metadata.score if metric == "score" else obj.metadata.distance
    return float(value) if value is not None else float("nan")


def _rank(moment: Moment, metric: str) -> float:
    return -max(moment.parts.values()) if metric == "score" else moment.best


def _group(group: Any, metric: str, per_file: int) -> MomentGroup:
    by_window: dict[int, Moment] = {}
    first = group.objects[0].properties if group.objects else {}
    for obj in group.objects:
        props = obj.properties
        index = int(props["segment"])
        moment = by_window.get(index)
        if moment is None:
            moment = by_window[index] = Moment(float(props["start"]), float(props["end"]), index, {}, str(obj.uuid))
        moment.parts[str(props["part"])] = _value(obj, metric)
    moments = sorted(by_window.values(), key=lambda m: _rank(m, metric))[:per_file]
    skip = set(MOMENT_PROPERTIES) | {"title", "text"}
    extra = {k: v for k, v in first.items() if k not in skip and v not in (None, "", [])}
    for key in ("title", "text"):
        if first.get(key):
            extra[key] = first[key]
    return MomentGroup(str(first.get("source", "")), str(first.get("sha256", group.name)), str(first.get("media", "")),
                       moments, _plain(extra))


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    from imagebind_vectorizer.weaviate.search import _plain as plain_value

    return {k: plain_value(v) for k, v in values.items()}


def format_timestamp(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    fraction = f"{seconds - whole:.1f}"[1:] if seconds != whole else ""
    return f"{hours}:{minutes:02d}:{secs:02d}{fraction}" if hours else f"{minutes}:{secs:02d}{fraction}"


def format_moments(result: MomentsResult) -> str:
    lines = [f"{result.operator} · {' + '.join(result.inputs)} · moments grouped by file"]
    if not result.groups:
        lines.append("  (no results)")
        return "\n".join(lines)
    for rank, group in enumerate(result.groups, 1):
        title = f" — {group.properties['title']}" if group.properties.get("title") else ""
        lines.append(f"{rank}. {group.source} ({group.media}){title}")
        for moment in group.moments:
            parts = ", ".join(f"{part} {value:.4f}" for part, value in sorted(moment.parts.items()))
            lines.append(f"     {format_timestamp(moment.start)}–{format_timestamp(moment.end)}  "
                         f"[segment {moment.segment}]  {result.metric}: {parts}")
    return "\n".join(lines)


def format_moments_json(result: MomentsResult) -> str:
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False)
