"""Collections vectorized by multi2vec-bind (our server behind Weaviate).

A collection made here has:

* one blob property per media kind, named after it: `image`, `audio`, `video`, `depth`, `thermal`,
  `imu` (standard base64 of the file bytes), and the text properties `text` and `title`;
* bookkeeping properties written by the ingester: `source` (path relative to the ingested folder),
  `sha256` (content hash, also the basis of the object's UUID), `modalities` (what the object holds)
  and `format` (detected file format); filterable, not vectorized;
* user metadata properties (`name:type`), filterable and, for text, searchable;
* one or more named vectors, each vectorized by multi2vec-bind from a set of those fields, with
  optional per-field weights; cosine distance.

Every vector is configured with `Configure.Vectors.custom(module_name="multi2vec-bind", ...)`
rather than `Configure.Vectors.multi2vec_bind(...)`: the client's factory sends the key `IMUFields`,
Weaviate reads only `imuFields` (case-sensitively), and IMU properties configured the obvious way
are silently never vectorized.

How Weaviate combines one object's field vectors (Weaviate v1.39
modules/multi2vec-bind/vectorizer/vectorizer.go, usecases/vectorizer/combine.go): properties are visited
in sorted name order and grouped by kind (text, image, audio, video, imu, thermal, depth); the
configured weights are concatenated in the same kind order and normalised to sum 1; the result is
sum(w_i * v_i) / N, or the plain mean without weights. Weights are matched to vectors *by position*:
an object that lacks one of a weighted vector's fields shifts the weights of the fields after it,
so weights only mean what they say when every object has every field of that vector. Field lists
are always written in sorted order here so that, for complete objects, positions agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from imagebind_vectorizer.kinds import WEAVIATE_KIND_ORDER, InputKind
from imagebind_vectorizer.weaviate.client import weaviate_errors
from imagebind_vectorizer.weaviate.errors import SchemaError

if TYPE_CHECKING:
    import weaviate
    from weaviate.collections import Collection

MODULE = "multi2vec-bind"
TEXT_PROPERTIES: tuple[str, ...] = ("text", "title")
MEDIA_KINDS: tuple[InputKind, ...] = tuple(kind for kind in InputKind if kind is not InputKind.TEXT)
#: media property name -> its input kind (the property is named after the kind)
MEDIA_PROPERTIES: dict[str, InputKind] = {kind.value: kind for kind in MEDIA_KINDS}
VECTORIZED_FIELDS: tuple[str, ...] = (*TEXT_PROPERTIES, *MEDIA_PROPERTIES)
BOOKKEEPING_PROPERTIES: tuple[str, ...] = ("source", "sha256", "modalities", "format")
RESERVED = frozenset(VECTORIZED_FIELDS) | frozenset(BOOKKEEPING_PROPERTIES)

#: input kind -> the module-config key of its fields, in the order Weaviate concatenates an object's
#: vectors and the weights lists
MODULE_FIELD_KEYS: dict[InputKind, str] = {kind: kind.facts.module_fields_key for kind in WEAVIATE_KIND_ORDER}
DEFAULT_VECTOR = "default"
_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,229}$")

#: `--property name:TYPE` spellings -> weaviate DataType member names
PROPERTY_TYPES: dict[str, str] = {
    "text": "TEXT", "string": "TEXT", "text[]": "TEXT_ARRAY",
    "int": "INT", "integer": "INT", "int[]": "INT_ARRAY",
    "number": "NUMBER", "float": "NUMBER", "number[]": "NUMBER_ARRAY",
    "bool": "BOOL", "boolean": "BOOL", "bool[]": "BOOL_ARRAY", "boolean[]": "BOOL_ARRAY",
    "date": "DATE", "date[]": "DATE_ARRAY", "uuid": "UUID",
}


def parse_scalar(raw: str, base: str) -> Any:
    """A string as a value of the Weaviate scalar type `base` ("int", "number", "boolean"; any other
    type stays a string). Raises ValueError. Manifest cells and search filters both come as strings."""
    if base == "int":
        return int(raw)
    if base == "number":
        return float(raw)
    if base == "boolean":
        lowered = raw.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(raw)
        return lowered in ("true", "1", "yes")
    return raw


@dataclass(frozen=True)
class VectorSpec:
    """A named vector vectorized by multi2vec-bind from `fields`, optionally weighted per field."""

    name: str
    fields: tuple[str, ...]
    weights: Mapping[str, float] | None = None

    def kind_of(self, prop: str) -> InputKind:
        return MEDIA_PROPERTIES.get(prop, InputKind.TEXT)

    def fields_by_kind(self) -> dict[InputKind, list[str]]:
        grouped: dict[InputKind, list[str]] = {}
        for prop in sorted(self.fields):  # Weaviate visits properties in sorted order
            grouped.setdefault(self.kind_of(prop), []).append(prop)
        return {kind: grouped[kind] for kind in WEAVIATE_KIND_ORDER if kind in grouped}

    def module_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {MODULE_FIELD_KEYS[kind]: props for kind, props in self.fields_by_kind().items()}
        if self.weights:
            config["weights"] = {MODULE_FIELD_KEYS[kind]: [float(self.weights.get(p, 1.0)) for p in props]
                                 for kind, props in self.fields_by_kind().items()}
        return config

    def effective_weights(self) -> dict[str, float] | None:
        if not self.weights:
            return None
        return {prop: float(self.weights.get(prop, 1.0)) for props in self.fields_by_kind().values()
                for prop in props}


@dataclass
class CollectionSpec:
    name: str
    vectors: list[VectorSpec] = field(default_factory=lambda: [VectorSpec(DEFAULT_VECTOR, VECTORIZED_FIELDS)])
    properties: list[tuple[str, str]] = field(default_factory=list)  # (name, PROPERTY_TYPES key)
    description: str | None = None

    def validate(self) -> None:
        if not _NAME.match(self.name):
            raise SchemaError(f"collection name {self.name!r}: use letters, digits and _, starting with a letter")
        seen: set[str] = set()
        for name, type_name in self.properties:
            if not _NAME.match(name):
                raise SchemaError(f"property name {name!r}: use letters, digits and _, not starting with a digit")
            if name in RESERVED:
                raise SchemaError(f"property {name!r} is built in ({', '.join(sorted(RESERVED))}); choose another name")
            if name in seen:
                raise SchemaError(f"property {name!r} is given twice")
            if type_name not in PROPERTY_TYPES:
                raise SchemaError(f"property {name!r}: unknown type {type_name!r}; expected one of "
                                  f"{', '.join(PROPERTY_TYPES)}")
            seen.add(name)
        text_user = {name for name, t in self.properties if PROPERTY_TYPES[t] == "TEXT"}
        if not self.vectors:
            raise SchemaError("a collection needs at least one vector")
        names: set[str] = set()
        for vector in self.vectors:
            if not _NAME.match(vector.name):
                raise SchemaError(f"vector name {vector.name!r}: use letters, digits and _")
            if vector.name in names:
                raise SchemaError(f"vector {vector.name!r} is given twice")
            names.add(vector.name)
            if not vector.fields:
                raise SchemaError(f"vector {vector.name!r} has no fields")
            for prop in vector.fields:
                if prop not in VECTORIZED_FIELDS and prop not in text_user:
                    raise SchemaError(f"vector {vector.name!r}: {prop!r} is not a field that can be vectorized; "
                                      f"use {', '.join(VECTORIZED_FIELDS)} or a text property added with --property")
            for prop, weight in (vector.weights or {}).items():
                if prop not in vector.fields:
                    continue
                if not weight > 0:
                    raise SchemaError(f"weight of {prop!r} must be positive, got {weight}")

    def create_arguments(self) -> dict[str, Any]:
        from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances

        props = [Property(name=name, data_type=DataType.TEXT, index_filterable=True, index_searchable=True)
                 for name in TEXT_PROPERTIES]
        props += [Property(name=name, data_type=DataType.BLOB) for name in MEDIA_PROPERTIES]
        props += [
            Property(name="source", data_type=DataType.TEXT, tokenization=Tokenization.FIELD,
                     description="path of the ingested file(s), relative to the ingested folder"),
            Property(name="sha256", data_type=DataType.TEXT, tokenization=Tokenization.FIELD,
                     description="sha256 of the content; the object's UUID is derived from it"),
            Property(name="modalities", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD,
                     description="input kinds the object holds"),
            Property(name="format", data_type=DataType.TEXT, tokenization=Tokenization.FIELD,
                     description="detected file format(s)"),
        ]
        props += [user_property(name, type_name) for name, type_name in self.properties]
        vectors = [
            Configure.Vectors.custom(
                name=vector.name, module_name=MODULE, module_config=vector.module_config(),
                vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE))
            for vector in self.vectors
        ]
        return {"name": self.name, "description": self.description, "properties": props, "vector_config": vectors}


def user_property(name: str, type_name: str) -> Any:
    """A user metadata property (`name:type`, type a PROPERTY_TYPES key): filterable, text also searchable."""
    from weaviate.classes.config import DataType, Property

    data_type = DataType[PROPERTY_TYPES[type_name]]
    searchable = data_type in (DataType.TEXT, DataType.TEXT_ARRAY)
    return Property(name=name, data_type=data_type, index_filterable=True,
                    index_searchable=searchable if searchable else None)


# Parsing the CLI spellings -----------------------------------------------------------------------
def parse_named_vector(text: str) -> tuple[str, tuple[str, ...]]:
    """`NAME=field,field` -> (NAME, fields)."""
    name, sep, rest = text.partition("=")
    fields = tuple(dict.fromkeys(f.strip() for f in rest.split(",") if f.strip()))
    if not sep or not name.strip() or not fields:
        raise SchemaError(f"--named-vector {text!r}: expected NAME=field,field (e.g. visual=image,video)")
    return name.strip(), fields


def parse_weights(text: str) -> dict[str, float]:
    """`image=0.7,text=0.3` -> {"image": 0.7, "text": 0.3}."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        prop, sep, value = part.partition("=")
        try:
            weights[prop.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SchemaError(f"--weights {text!r}: expected field=number pairs such as image=0.7,text=0.3")
    return weights


def parse_property(text: str) -> tuple[str, str]:
    """`name:type` (type defaults to text) -> (name, type)."""
    name, _, type_name = text.partition(":")
    type_name = (type_name or "text").strip().lower()
    if type_name not in PROPERTY_TYPES:
        raise SchemaError(f"--property {text!r}: unknown type {type_name!r}; "
                          f"expected one of {', '.join(PROPERTY_TYPES)}")
    return name.strip(), type_name


def make_spec(name: str, *, named_vectors: Sequence[str] = (), weights: str | Mapping[str, float] | None = None,
              properties: Sequence[str] = (), description: str | None = None) -> CollectionSpec:
    """A CollectionSpec from the CLI's spellings. Without --named-vector there is one vector,
    "default", over every vectorizable field."""
    weight_map = parse_weights(weights) if isinstance(weights, str) else dict(weights or {})
    parsed_vectors = [parse_named_vector(v) for v in named_vectors] or [(DEFAULT_VECTOR, VECTORIZED_FIELDS)]
    spec = CollectionSpec(
        name=name, description=description,
        properties=[parse_property(p) for p in properties],
        vectors=[VectorSpec(vname, fields, {p: w for p, w in weight_map.items() if p in fields} or None)
                 for vname, fields in parsed_vectors],
    )
    unused = set(weight_map) - {p for v in spec.vectors for p in v.fields}
    if unused:
        raise SchemaError(f"--weights names {', '.join(sorted(unused))}, which no vector uses")
    spec.validate()
    return spec


# Server side -------------------------------------------------------------------------------------
class Creatable(Protocol):
    """What `create_collection` needs of a collection's description: CollectionSpec, or a moment
    collection's MomentsSpec (weaviate/moments.py)."""

    name: str

    def validate(self) -> None: ...

    def create_arguments(self) -> dict[str, Any]: ...


def create_collection(client: weaviate.WeaviateClient, spec: Creatable, *, replace: bool = False) -> Collection:
    spec.validate()
    with weaviate_errors(f"creating collection {spec.name}"):
        if client.collections.exists(spec.name):
            if not replace:
                raise SchemaError(f"collection {spec.name} already exists (delete it first, or use another name)")
            client.collections.delete(spec.name)
        return client.collections.create(**spec.create_arguments())


def delete_collection(client: weaviate.WeaviateClient, name: str) -> bool:
    """Delete a collection; False if there was none."""
    with weaviate_errors(f"deleting collection {name}"):
        if not client.collections.exists(name):
            return False
        client.collections.delete(name)
        return True


def get_collection(client: weaviate.WeaviateClient, name: str) -> Collection:
    with weaviate_errors(f"looking up collection {name}"):
        if not client.collections.exists(name):
            raise SchemaError(f"collection {name} does not exist; create it with "
                              f"`imagebind-vectorizer collection create {name}`")
        return client.collections.get(name)


@dataclass(frozen=True)
class CollectionInfo:
    """What a collection's schema says, read back from Weaviate."""

    name: str
    property_types: dict[str, str]  # name -> weaviate data type value ("text", "int", "blob", ...)
    vectors: dict[str, dict[str, Any]]  # vector name -> multi2vec-bind module config

    @property
    def vector_names(self) -> list[str]:
        return list(self.vectors)

    def ignored_imu_keys(self) -> list[str]:
        """Vectors whose config uses the client's `IMUFields` spelling, which Weaviate ignores."""
        key = InputKind.IMU.facts.module_fields_key
        return [name for name, cfg in self.vectors.items() if "IMUFields" in cfg and key not in cfg]

    def weighted_fields(self) -> dict[str, list[str]]:
        """vector name -> its fields, for vectors with weights (where missing fields shift weights)."""
        out: dict[str, list[str]] = {}
        for name, cfg in self.vectors.items():
            if cfg.get("weights"):
                out[name] = [p for key in MODULE_FIELD_KEYS.values() for p in cfg.get(key, []) or []]
        return out


def describe(collection: Collection) -> CollectionInfo:
    with weaviate_errors(f"reading the schema of {collection.name}"):
        config = collection.config.get()
    types = {p.name: str(getattr(p.data_type, "value", p.data_type)) for p in config.properties}
    vectors: dict[str, dict[str, Any]] = {}
    for name, vc in (config.vector_config or {}).items():
        vectorizer = vc.vectorizer
        if str(getattr(vectorizer.vectorizer, "value", vectorizer.vectorizer)) == MODULE:
            vectors[name] = dict(vectorizer.model or {})
    legacy = getattr(config, "vectorizer_config", None)
    if not vectors and legacy is not None and str(getattr(legacy.vectorizer, "value", legacy.vectorizer)) == MODULE:
        vectors[DEFAULT_VECTOR] = dict(legacy.model or {})
    return CollectionInfo(config.name, types, vectors)


def property_kind(name: str) -> InputKind | None:
    """The input kind a built-in property holds (None for metadata)."""
    if name in TEXT_PROPERTIES:
        return InputKind.TEXT
    return MEDIA_PROPERTIES.get(name)


def format_vectors(spec: CollectionSpec) -> Iterable[str]:
    for vector in spec.vectors:
        parts = []
        weights = vector.effective_weights()
        for kind, props in vector.fields_by_kind().items():
            for prop in props:
                label = prop if prop == kind.value else f"{prop} ({kind.value})"
                parts.append(f"{label}={weights[prop]:g}" if weights else label)
        yield f"vector {vector.name}: " + ", ".join(parts)
