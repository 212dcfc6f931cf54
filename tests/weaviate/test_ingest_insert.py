"""Inserting (no server): batches bounded in bytes, the reasons Weaviate's client packs into one
exception when a whole batch fails, and the advice added to Weaviate's messages."""

from __future__ import annotations

from imagebind_vectorizer.weaviate.ingest.insert import _all_failed_reasons, explain, split
from imagebind_vectorizer.weaviate.ingest.objects import BuiltObject
from imagebind_vectorizer.weaviate.ingest.plan import PlannedObject


def built(size: int, name: str) -> BuiltObject:
    return BuiltObject(PlannedObject(name, [], {}), name, {}, size)


def test_batches_stay_under_the_byte_limit_and_a_big_object_goes_alone() -> None:
    objects = [built(40, "a"), built(40, "b"), built(30, "c"), built(200, "d"), built(10, "e")]
    assert [[o.uuid for o in batch] for batch in split(objects, 100)] == [["a", "b"], ["c"], ["d"], ["e"]]
    assert list(split([], 100)) == []


def test_the_set_of_messages_of_an_all_failed_batch_is_unpacked() -> None:
    text = ("Every object failed during insertion. Here is the set of all errors:\n"
            "vectorize target vector default: connection refused\n\n  nil-vector\n")
    assert _all_failed_reasons(text) == ["vectorize target vector default: connection refused", "nil-vector"]
    assert _all_failed_reasons("something\nelse") == ["something else"]


def test_explanations_say_what_to_do() -> None:
    assert "start the imagebind-vectorizer server again" in explain(
        "vectorize params: send POST request: dial tcp: connect: connection refused")
    assert "holds none of that vector's fields" in explain("insert called with nil-vector")
    assert "MODULES_CLIENT_TIMEOUT" in explain("context deadline exceeded")
    assert explain("some other reason") == "some other reason"
