"""What a collection's schema means for an object about to go in (no server): schema warnings,
vectors the object cannot fill (`empty_vectors`), and weights Weaviate would misapply (`weight_shift`).

Weaviate (v1.39 modules/multi2vec-bind) groups an object's present fields by kind in the order text,
image, audio, video, imu, thermal, depth, and takes the weights by position over all configured
fields: an object lacking a field shifts the weights of the fields after it."""

from __future__ import annotations

from typing import Any

from imagebind_vectorizer.weaviate.collections import CollectionInfo, make_spec
from imagebind_vectorizer.weaviate.ingest import empty_vectors, schema_warnings, weight_shift


def info_of(*vectors: str, weights: str | None = None, **raw: dict[str, Any]) -> CollectionInfo:
    """The schema our `collection create` writes for these --named-vector specs (read back as Weaviate
    stores it), plus any raw module configs."""
    spec = make_spec("C", named_vectors=vectors, weights=weights)
    configs = {v.name: v.module_config() for v in spec.vectors} | raw
    return CollectionInfo("C", {}, configs)


def test_an_object_without_any_field_of_a_vector_is_caught() -> None:
    info = info_of("visual=image,video", "words=text,title")
    assert empty_vectors(info, {"image": "aGk=", "title": ""}) == ["words"]  # an empty string fills nothing
    assert empty_vectors(info, {"video": "aGk=", "title": "t"}) == []
    assert empty_vectors(info, {"year": 2020}) == ["visual", "words"]


def test_only_keys_weaviate_reads_count_as_fields() -> None:
    info = info_of(legacy={"IMUFields": ["imu"]})  # the weaviate-client's spelling: ignored by Weaviate
    assert "legacy" in empty_vectors(info, {"imu": "aGk="})
    warnings = schema_warnings(info)
    assert len(warnings) == 1 and "vector(s) legacy list IMU fields under 'IMUFields'" in warnings[0]
    assert schema_warnings(CollectionInfo("Bare", {}, {})) == [
        "collection Bare has no multi2vec-bind vector; objects will not be vectorized"]


def test_weights_shift_when_an_earlier_field_is_missing() -> None:
    info = info_of("mix=text,image,audio", weights="text=0.3,image=0.6,audio=0.1")
    # complete: weights apply as written
    assert weight_shift(info, {"text": "t", "image": "aQ==", "audio": "YQ=="}) == []
    # no text: image gets text's weight and audio image's
    assert weight_shift(info, {"image": "aQ==", "audio": "YQ=="}) == ["mix"]
    # no audio, the last field: the earlier weights still line up
    assert weight_shift(info, {"text": "t", "image": "aQ=="}) == []
    # one field only: its weight merely scales the one vector
    assert weight_shift(info, {"audio": "YQ=="}) == []


def test_equal_weights_cannot_shift_and_unweighted_vectors_are_ignored() -> None:
    assert weight_shift(info_of("mix=text,image,audio", weights="text=0.5,image=0.5,audio=0.5"),
                        {"image": "aQ==", "audio": "YQ=="}) == []
    assert weight_shift(info_of("plain=text,image,audio"), {"image": "aQ==", "audio": "YQ=="}) == []


def test_weights_follow_weaviates_kind_order_not_the_listed_order() -> None:
    # listed image, text; Weaviate orders text before image: a missing text shifts image's weight
    info = info_of("mix=image,text,depth", weights="image=0.7,text=0.2,depth=0.1")
    assert info.vectors["mix"]["weights"] == {"textFields": [0.2], "imageFields": [0.7], "depthFields": [0.1]}
    assert weight_shift(info, {"image": "aQ==", "depth": "ZA=="}) == ["mix"]
    assert weight_shift(info, {"text": "t", "image": "aQ=="}) == []
