"""Building an object from a planned one: read its files, decide each file's kind from its bytes (and
its hint), encode media as base64, type the metadata by the collection's schema, and derive the
object's UUID from the content, so that ingesting again never duplicates anything."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.collections import TEXT_PROPERTIES, parse_scalar
from imagebind_vectorizer.weaviate.detect import Detected, sniff
from imagebind_vectorizer.weaviate.errors import WeaviateSideError
from imagebind_vectorizer.weaviate.ingest.plan import PlannedObject

#: Weaviate's default gRPC message limit is 104,858,000 bytes: one object must fit well below it
MAX_OBJECT_BYTES = 96 * 1024 * 1024
#: kinds whose files are image files (depth and thermal maps are told apart only by a hint)
IMAGE_LIKE = (InputKind.IMAGE, InputKind.DEPTH, InputKind.THERMAL)


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
        return parse_scalar(value, base)  # dates stay strings: Weaviate parses them itself
    except ValueError:
        raise WeaviateSideError(f"{name}={value!r} is not a valid {base}") from None


def build_object(planned: PlannedObject, property_types: Mapping[str, str]) -> BuiltObject:
    from weaviate.util import generate_uuid5

    properties: dict[str, Any] = {}
    hashes: list[str] = []
    kinds: list[InputKind] = []
    formats: list[str] = []
    payload = 0
    for source in sorted(planned.files, key=lambda s: s.rel):
        try:
            data = source.read_bytes()
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
