"""What the collection's schema means for the objects about to go in: warnings about the schema itself,
objects that would get no vector, and objects whose per-field weights Weaviate would misapply
(see weaviate/collections.py for how Weaviate combines an object's field vectors)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagebind_vectorizer.weaviate.collections import MODULE_FIELD_KEYS, CollectionInfo


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
        for key in MODULE_FIELD_KEYS.values():  # in the order Weaviate concatenates them
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
