"""IMU through Weaviate: the client's `imu_fields=` writes `IMUFields`, which Weaviate ignores, so
IMU data is never vectorized; our collections write `imuFields` and it is."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from weaviate.classes.config import Configure, DataType, Property
from weaviate.classes.data import DataObject
from weaviate.util import generate_uuid5

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.collections import create_collection, describe, make_spec
from imagebind_vectorizer.weaviate.ingest import ingest_folder
from imagebind_vectorizer.weaviate.search import QueryInput, search
from tests.e2e.support import cosine
from tests.helpers import write_files

pytestmark = pytest.mark.weaviate


def test_imu_only_object_ingested_by_our_library_has_a_vector_and_is_found_by_near_imu(
        client, ours, samples, dimensions, collection_name, tmp_path: Path):
    collection = create_collection(client, make_spec(collection_name))
    write_files(tmp_path, {"walk.csv": samples[InputKind.IMU][0], "run.csv": samples[InputKind.IMU][1]})
    report = ingest_folder(collection, tmp_path, progress=False)
    assert report.ok and report.inserted == 2, report
    walk = collection.query.fetch_object_by_id(report.uuids["walk.csv"], include_vector=True)
    assert walk.properties["modalities"] == ["imu"]
    vector = walk.vector["default"]
    assert len(vector) == dimensions
    assert cosine(vector, ours.embed(InputKind.IMU, [samples[InputKind.IMU][0]])[0]) >= 0.9999
    found = search(collection, [QueryInput.of(InputKind.IMU, samples[InputKind.IMU][0])], limit=2)
    assert found.operator == "nearIMU"
    assert found.hits[0].uuid == report.uuids["walk.csv"]
    assert found.hits[0].distance == pytest.approx(0.0, abs=1e-4)


def test_the_clients_imu_fields_leave_an_imu_only_object_without_a_vector(client, samples, collection_name,
                                                                        tmp_path: Path):
    collection = client.collections.create(
        collection_name,
        properties=[Property(name="text", data_type=DataType.TEXT), Property(name="imu", data_type=DataType.BLOB)],
        vector_config=Configure.Vectors.multi2vec_bind(text_fields=["text"], imu_fields=["imu"]),
    )
    config = describe(collection).vectors["default"]
    assert config.get("IMUFields") == ["imu"] and "imuFields" not in config  # what the client wrote

    imu_id, text_id = generate_uuid5("imu-only"), generate_uuid5("text-only")
    imu = base64.b64encode(samples[InputKind.IMU][2]).decode()
    result = collection.data.insert_many([DataObject(properties={"imu": imu}, uuid=imu_id),
                                          DataObject(properties={"text": "a person walking"}, uuid=text_id)])
    # Weaviate found no field to vectorize in the IMU object: it stores it, without a vector.
    assert set(result.errors) == {0}
    assert "nil-vector" in result.errors[0].message
    imu_obj = collection.query.fetch_object_by_id(imu_id, include_vector=True)
    assert imu_obj is not None and imu_obj.properties == {"text": None}
    assert not any((imu_obj.vector or {}).values())
    text_obj = collection.query.fetch_object_by_id(text_id, include_vector=True)
    assert text_obj.vector["default"]  # the collection does vectorize, just not IMU

    # Our ingest sees the misconfiguration and refuses such objects with the reason.
    write_files(tmp_path, {"walk.csv": samples[InputKind.IMU][1]})
    report = ingest_folder(collection, tmp_path, progress=False)
    assert not report.ok
    assert any("IMUFields" in warning for warning in report.warnings)
    assert [p.source for p in report.failed] == ["walk.csv"]
    assert "none of the fields of vector 'default' (text)" in report.failed[0].reason
