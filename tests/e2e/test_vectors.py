"""What Weaviate stores for an object equals what our server returns for the same fields, combined
the way Weaviate combines them: sorted property names grouped by kind, weights normalised and
matched by position, weighted sum divided by the number of vectors (or the plain mean)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from weaviate.classes.data import DataObject
from weaviate.util import generate_uuid5

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.collections import create_collection, describe, make_spec
from imagebind_vectorizer.weaviate.errors import QueryError
from imagebind_vectorizer.weaviate.search import QueryInput, search
from tests.e2e.support import cosine, weaviate_combination

pytestmark = pytest.mark.weaviate


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def insert(collection, objects: dict[str, dict]) -> dict[str, str]:
    ids = {name: generate_uuid5(name) for name in objects}
    result = collection.data.insert_many([DataObject(properties=props, uuid=ids[name])
                                          for name, props in objects.items()])
    assert not result.errors, {i: e.message for i, e in result.errors.items()}
    return ids


def stored_vectors(collection, uuid: str) -> dict[str, list[float]]:
    obj = collection.query.fetch_object_by_id(uuid, include_vector=True)
    assert obj is not None
    return {name: list(v) for name, v in (obj.vector or {}).items() if v}


def test_single_and_mixed_objects_store_weaviates_combination_of_our_vectors(client, ours, samples, dimensions,
                                                                            collection_name):
    collection = create_collection(client, make_spec(collection_name))
    media = {kind: b64(samples[kind][0]) for kind in samples}
    objects = {
        "text": {"text": "a red bicycle leaning against a brick wall"},
        "title": {"title": "evening news"},
        **{kind.value: {kind.value: media[kind]} for kind in samples},
        "text+image": {"text": "a photo of shapes", "image": media[InputKind.IMAGE]},
        "title+text+audio+imu": {"title": "a walk", "text": "footsteps on gravel", "audio": media[InputKind.AUDIO],
                                 "imu": media[InputKind.IMU]},
        "everything": {"title": "all kinds", "text": "one object holding every kind",
                       **{kind.value: media[kind] for kind in samples}},
    }
    ids = insert(collection, objects)
    config = describe(collection).vectors["default"]
    assert config["imuFields"] == ["imu"]  # the key Weaviate reads (not the client's IMUFields)
    for name, props in objects.items():
        vectors = stored_vectors(collection, ids[name])
        assert list(vectors) == ["default"], name
        stored = vectors["default"]
        assert len(stored) == dimensions, name
        expected = weaviate_combination(ours, props, config)
        assert cosine(stored, expected) >= 0.9999, name
        if len(props) == 1:  # one field: exactly our server's vector for it (unit length)
            assert np.linalg.norm(stored) == pytest.approx(1.0, abs=1e-4), name


def test_field_weights_hold_for_complete_objects_and_shift_for_incomplete_ones(client, ours, samples,
                                                                              collection_name):
    spec = make_spec(collection_name, named_vectors=["mix=text,image,audio"], weights="image=0.6,text=0.3,audio=0.1")
    collection = create_collection(client, spec)
    config = describe(collection).vectors["mix"]
    assert config["weights"] == {"textFields": [0.3], "imageFields": [0.6], "audioFields": [0.1]}
    image, audio = b64(samples[InputKind.IMAGE][1]), b64(samples[InputKind.AUDIO][1])
    text = "waves on a beach"
    objects = {"complete": {"text": text, "image": image, "audio": audio}, "no-text": {"image": image, "audio": audio}}
    ids = insert(collection, objects)
    t = ours.embed(InputKind.TEXT, [text])[0]
    i = ours.embed(InputKind.IMAGE, [image])[0]
    a = ours.embed(InputKind.AUDIO, [audio])[0]

    complete = stored_vectors(collection, ids["complete"])["mix"]
    assert cosine(complete, 0.3 * t + 0.6 * i + 0.1 * a) >= 0.9999  # the weights mean what they say
    assert cosine(complete, weaviate_combination(ours, objects["complete"], config)) >= 0.9999

    shifted = stored_vectors(collection, ids["no-text"])["mix"]
    # Weaviate takes weights by position: the image gets text's 0.3 and the audio gets image's 0.6.
    assert cosine(shifted, 0.3 * i + 0.6 * a) >= 0.9999
    assert cosine(shifted, weaviate_combination(ours, objects["no-text"], config)) >= 0.9999
    assert cosine(shifted, 0.6 * i + 0.1 * a) < 0.999  # not what the weights say


def test_named_vectors_are_vectorized_from_their_own_fields_and_searched_by_target(client, ours, samples,
                                                                                  collection_name):
    spec = make_spec(collection_name, named_vectors=["visual=image,video", "words=text,title"])
    collection = create_collection(client, spec)
    image, video = b64(samples[InputKind.IMAGE][2]), b64(samples[InputKind.VIDEO][2])
    objects = {"image+text": {"image": image, "text": "a photo with a caption"},
               "video+title": {"video": video, "title": "a short clip"}}
    ids = insert(collection, objects)

    first = stored_vectors(collection, ids["image+text"])
    assert set(first) == {"visual", "words"}
    assert cosine(first["visual"], ours.embed(InputKind.IMAGE, [image])[0]) >= 0.9999
    assert cosine(first["words"], ours.embed(InputKind.TEXT, ["a photo with a caption"])[0]) >= 0.9999
    second = stored_vectors(collection, ids["video+title"])
    assert cosine(second["visual"], ours.embed(InputKind.VIDEO, [video])[0]) >= 0.9999
    assert cosine(second["words"], ours.embed(InputKind.TEXT, ["a short clip"])[0]) >= 0.9999

    found = search(collection, [QueryInput.of(InputKind.TEXT, "a short clip")], target_vector="words", limit=2)
    assert found.hits[0].uuid == ids["video+title"]
    assert found.hits[0].distance == pytest.approx(0.0, abs=1e-4)
    found = search(collection, [QueryInput.of(InputKind.IMAGE, samples[InputKind.IMAGE][2])],
                   target_vector="visual", limit=2)
    assert found.hits[0].uuid == ids["image+text"]
    assert found.hits[0].distance == pytest.approx(0.0, abs=1e-4)
    found = search(collection, [QueryInput.of(InputKind.VIDEO, samples[InputKind.VIDEO][2])],
                   target_vector="visual", limit=2)
    assert found.hits[0].uuid == ids["video+title"]
    with pytest.raises(QueryError, match="several vectors"):
        search(collection, [QueryInput.of(InputKind.TEXT, "anything")])
    with pytest.raises(QueryError, match="no vector 'sound'"):
        search(collection, [QueryInput.of(InputKind.TEXT, "anything")], target_vector="sound")
