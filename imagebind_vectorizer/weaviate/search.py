"""Search a multi2vec-bind collection with any input kind, or with several at once.

* One input: Weaviate vectorizes it through the module — nearText for text (or hybrid with
  `hybrid_alpha`), and near_media with NearMediaType for image, audio, video, depth, thermal, IMU.
* Several inputs ("embedding arithmetic", as in the ImageBind paper): each is embedded by our server
  exactly as Weaviate would send it (POST /vectorize, base64), each vector is L2-normalised (so the
  weights mean the same whatever the server's output scaling), the weighted sum is L2-normalised
  and searched with near_vector.
* Filters: `prop=value` (also `!=`, `>`, `>=`, `<`, `<=`, and `~` for a LIKE pattern with `*`),
  values typed by the collection's schema; all conditions must hold.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imagebind_vectorizer import notices
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.client import weaviate_errors
from imagebind_vectorizer.weaviate.collections import MEDIA_PROPERTIES, describe, parse_scalar
from imagebind_vectorizer.weaviate.errors import QueryError
from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient

if TYPE_CHECKING:
    from weaviate.collections import Collection

@dataclass(frozen=True)
class QueryInput:
    """A text, or a media file (or its bytes) of a given kind."""

    kind: InputKind
    value: str | bytes  # text, a file path, or raw bytes
    label: str = ""

    @classmethod
    def of(cls, kind: InputKind | str, value: str | bytes | Path) -> QueryInput:
        kind = InputKind.parse(kind) if isinstance(kind, str) else kind
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, bytes):
            label = f"<{len(value)} bytes>"
        else:
            label = value if kind is InputKind.TEXT else Path(value).name
        return cls(kind, value, label)

    def data(self) -> bytes | str:
        """Text, or the media bytes (read from the file)."""
        if self.kind is InputKind.TEXT or isinstance(self.value, bytes):
            return self.value
        try:
            return Path(self.value).read_bytes()
        except OSError as exc:
            raise QueryError(f"cannot read the {self.kind.value} file {self.value}: {exc.strerror or exc}") from None

    def base64(self) -> str:
        data = self.data()
        assert isinstance(data, bytes)
        return base64.b64encode(data).decode("ascii")


@dataclass
class Hit:
    uuid: str
    distance: float | None
    score: float | None
    properties: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "distance": self.distance, "score": self.score, "properties": self.properties}


@dataclass
class SearchResult:
    operator: str
    hits: list[Hit]
    inputs: list[str] = field(default_factory=list)
    weights: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"operator": self.operator, "inputs": self.inputs, "weights": self.weights,
                "results": [h.to_json() for h in self.hits]}


# Filters ------------------------------------------------------------------------------------------
_CONDITION = re.compile(r"^\s*([_A-Za-z][_0-9A-Za-z]*)\s*(>=|<=|!=|=|>|<|~)\s*(.*?)\s*$", re.S)


def typed_value(raw: str, data_type: str | None, prop: str) -> Any:
    """A filter value in the property's type (text when the type is unknown)."""
    base = (data_type or "text").removesuffix("[]")
    try:
        if base == "date":  # the client's filters want a datetime
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return parse_scalar(raw, base)
    except ValueError:
        raise QueryError(f"--where {prop}: {raw!r} is not a valid {base}") from None


def parse_where(expressions: Sequence[str], property_types: Mapping[str, str]) -> Any:
    """`prop=value` strings -> one weaviate Filter (all must hold), or None."""
    from weaviate.classes.query import Filter

    filters = []
    for text in expressions:
        match = _CONDITION.match(text)
        if not match:
            raise QueryError(f"--where {text!r}: expected PROP=VALUE (or !=, >, >=, <, <=, ~ for a * pattern)")
        prop, op, raw = match.groups()
        if prop in MEDIA_PROPERTIES:
            raise QueryError(f"--where {prop}: media (blob) properties cannot be filtered")
        if property_types and prop not in property_types:
            raise QueryError(f"--where {prop}: the collection has no such property; it has "
                             f"{', '.join(sorted(p for p in property_types if p not in MEDIA_PROPERTIES))}")
        by = Filter.by_property(prop)
        if op == "~":
            filters.append(by.like(raw))
            continue
        value = typed_value(raw, property_types.get(prop), prop)
        method = {"=": by.equal, "!=": by.not_equal, ">": by.greater_than, ">=": by.greater_or_equal,
                  "<": by.less_than, "<=": by.less_or_equal}[op]
        filters.append(method(value))
    if not filters:
        return None
    return filters[0] if len(filters) == 1 else Filter.all_of(filters)


# Composition --------------------------------------------------------------------------------------
def compose_vector(server: VectorizerClient, inputs: Sequence[QueryInput],
                   weights: Sequence[float] | None = None) -> np.ndarray:
    """Embed every input through our server (one request), normalise each, take the weighted
    sum and normalise it."""
    if not inputs:
        raise QueryError("nothing to compose")
    weights = list(weights) if weights is not None else [1.0] * len(inputs)
    if len(weights) != len(inputs):
        raise QueryError(f"{len(weights)} weights for {len(inputs)} inputs")
    grouped: dict[InputKind, list[bytes | str]] = {}
    slots: list[tuple[InputKind, int]] = []
    for item in inputs:
        grouped.setdefault(item.kind, []).append(item.data())
        slots.append((item.kind, len(grouped[item.kind]) - 1))
    vectors = server.vectorize(grouped)
    total = np.zeros(next(iter(vectors.values())).shape[1], dtype=np.float64)
    for (kind, index), weight in zip(slots, weights, strict=True):
        vector = vectors[kind][index].astype(np.float64)
        norm = np.linalg.norm(vector)
        if norm == 0:
            raise QueryError(f"the {kind.value} input has a zero vector")
        total += weight * vector / norm
    norm = np.linalg.norm(total)
    if norm == 0:
        raise QueryError("the weighted inputs cancel out (zero vector)")
    return (total / norm).astype(np.float32)


def check_same_model(client: Any, server: VectorizerClient) -> str | None:
    """A warning when Weaviate's module reports a different model than `server` (composed
    queries must come from the model that vectorized the collection)."""
    try:
        module_meta = (client.get_meta().get("modules") or {}).get("multi2vec-bind") or {}
        ours = server.meta()
    except Exception:  # best effort: a mismatch check must never break a search
        return None
    if module_meta.get("server") != "imagebind-vectorizer":
        return None
    # every field that changes a vector: architecture, preprocessing profile, output scaling
    for key in ("name", "dimensions", "preprocessing", "outputScaling"):
        if module_meta.get(key) != ours.get(key):
            return (f"Weaviate's vectorizer reports {key}={module_meta.get(key)!r} but {server.url} has "
                    f"{ours.get(key)!r}: composed queries will not match the collection's vectors")
    sha_w = (module_meta.get("checkpoint") or {}).get("sha256")
    sha_o = (ours.get("checkpoint") or {}).get("sha256")
    if sha_w and sha_o and sha_w != sha_o:
        return f"Weaviate's vectorizer and {server.url} load different checkpoints ({sha_w[:12]} vs {sha_o[:12]})"
    return None


def random_weights_notice(client: Any, server: VectorizerClient | None = None) -> str | None:
    """The loud notice when the model behind a search has random weights: Weaviate relays our
    server's /meta as its multi2vec-bind module's meta, and a composed query's server answers its
    own. Best effort: an unreachable meta never breaks a search."""
    metas: list[Any] = []
    with contextlib.suppress(Exception):
        metas.append((client.get_meta().get("modules") or {}).get("multi2vec-bind"))
    if server is not None:
        with contextlib.suppress(Exception):
            metas.append(server.meta())
    return notices.banner(notices.RANDOM_WEIGHTS) if any(map(notices.reports_random_weights, metas)) else None


# Search -------------------------------------------------------------------------------------------
def _hits(objects: Sequence[Any]) -> list[Hit]:
    hits = []
    for obj in objects:
        props = {k: _plain(v) for k, v in (obj.properties or {}).items()}
        hits.append(Hit(str(obj.uuid), obj.metadata.distance, obj.metadata.score, props))
    return hits


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def search(collection: Collection, inputs: Sequence[QueryInput], *, weights: Sequence[float] | None = None,
           where: Sequence[str] = (), hybrid_alpha: float | None = None, limit: int = 10,
           target_vector: str | None = None, server: VectorizerClient | None = None) -> SearchResult:
    from weaviate.classes.query import MetadataQuery, NearMediaType

    if not inputs:
        raise QueryError("give at least one input (--text, --image, --audio, --video, --depth, --thermal, --imu)")
    if limit < 1:
        raise QueryError("--limit must be at least 1")
    info = describe(collection)
    filters = parse_where(where, info.property_types)
    if target_vector is None and len(info.vectors) > 1:
        raise QueryError(f"collection {info.name} has several vectors ({', '.join(info.vectors)}); "
                         "choose one with --target-vector")
    if target_vector is not None and info.vectors and target_vector not in info.vectors:
        raise QueryError(f"collection {info.name} has no vector {target_vector!r}; it has {', '.join(info.vectors)}")
    returned = [p for p, t in info.property_types.items() if t != "blob"]
    common: dict[str, Any] = dict(limit=limit, filters=filters, target_vector=target_vector,
                                  return_properties=returned,
                                  return_metadata=MetadataQuery(distance=True, score=True))
    labels = [f"{i.kind.value}:{i.label}" for i in inputs]
    query = collection.query
    if len(inputs) == 1:  # Weaviate vectorizes it; a weight would change nothing
        item = inputs[0]
        if hybrid_alpha is not None:
            if item.kind is not InputKind.TEXT:
                raise QueryError("--hybrid-alpha combines keyword and vector search and needs a --text query")
            if not 0.0 <= hybrid_alpha <= 1.0:
                raise QueryError("--hybrid-alpha must be between 0 (keywords only) and 1 (vector only)")
            text = item.data()
            with weaviate_errors("hybrid query"):
                response = query.hybrid(str(text), alpha=hybrid_alpha, **common)
            return SearchResult("hybrid", _hits(response.objects), labels)
        with weaviate_errors(f"{item.kind.facts.near_operator} query"):
            if item.kind is InputKind.TEXT:
                response = query.near_text(str(item.data()), **common)
            else:
                response = query.near_media(item.base64(), NearMediaType(item.kind.value), **common)
        return SearchResult(item.kind.facts.near_operator, _hits(response.objects), labels)
    if hybrid_alpha is not None:
        raise QueryError("--hybrid-alpha works with a single --text query, not with composed queries")
    if server is None:
        raise QueryError("a composed query (several inputs) is embedded by our server: give --server URL")
    vector = compose_vector(server, inputs, weights)
    with weaviate_errors("nearVector query"):
        response = query.near_vector(vector.tolist(), **common)
    return SearchResult("composed nearVector", _hits(response.objects), labels,
                        list(weights) if weights is not None else [1.0] * len(inputs))


# Output -------------------------------------------------------------------------------------------
def _cell(value: Any, width: int) -> str:
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = f"{value:.4f}"
    elif isinstance(value, list):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value).replace("\n", " ")
    return text if len(text) <= width else text[:width - 1] + "…"


def format_table(result: SearchResult, *, widths: Mapping[str, int] | None = None) -> str:
    """Rank, distance (or hybrid score), id, then the properties that have values."""
    lines = [f"{result.operator} · " + " + ".join(
        f"{w:g}×{label}" if result.weights else label
        for label, w in zip(result.inputs, result.weights or [1.0] * len(result.inputs), strict=True))]
    if not result.hits:
        lines.append("  (no results)")
        return "\n".join(lines)
    preferred = ["modalities", "source", "title", "text"]
    seen = {k for h in result.hits for k, v in h.properties.items() if v not in (None, "", [])}
    columns = [c for c in preferred if c in seen] + sorted(seen - set(preferred) - {"sha256", "format"})
    metric = "score" if result.operator == "hybrid" else "distance"
    limits = {"source": 28, "title": 28, "text": 32, "modalities": 16, **(widths or {})}
    header = ["#", metric, "id", *columns]
    rows = []
    for rank, hit in enumerate(result.hits, 1):
        value = hit.score if metric == "score" else hit.distance
        rows.append([str(rank), _cell(value, 10), hit.uuid[:8],
                     *(_cell(hit.properties.get(c), limits.get(c, 20)) for c in columns)])
    sizes = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(cell.ljust(size) for cell, size in zip(row, sizes, strict=True)).rstrip())
    return "\n".join(lines)


def format_json(result: SearchResult) -> str:
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False)
