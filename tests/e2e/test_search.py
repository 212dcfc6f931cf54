"""Searching the real Weaviate: every near* operator, where filters, hybrid, composed queries,
zero-shot classification; through the library and the CLI."""

from __future__ import annotations

import base64
import json
import uuid as uuidlib
from pathlib import Path

import numpy as np
import pytest
from weaviate.classes.data import DataObject

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.collections import create_collection, make_spec
from imagebind_vectorizer.weaviate.errors import QueryError
from imagebind_vectorizer.weaviate.search import QueryInput, search
from tests.e2e.support import cosine

pytestmark = pytest.mark.weaviate

TEXTS = ["alpha bravo charlie", "delta echo foxtrot", "golf hotel india"]
MEDIA_KINDS = [InputKind.IMAGE, InputKind.AUDIO, InputKind.VIDEO, InputKind.DEPTH, InputKind.THERMAL, InputKind.IMU]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def object_id(kind: InputKind | str, index: int) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"e2e/{kind}/{index}"))


@pytest.fixture(scope="module")
def media_collection(client, samples):
    """Single-kind objects (three per kind, three texts) with metadata, plus one object that
    holds image 0 and audio 0 together."""
    name = f"E2eSearch{uuidlib.uuid4().hex[:6]}"
    collection = create_collection(client, make_spec(name, properties=["category:text", "rank:int", "even:boolean"]))
    objects = []
    for kind in MEDIA_KINDS:
        for i, data in enumerate(samples[kind]):
            objects.append(DataObject(properties={kind.value: b64(data), "category": kind.value, "rank": i,
                                                  "even": i % 2 == 0}, uuid=object_id(kind, i)))
    for i, text in enumerate(TEXTS):
        objects.append(DataObject(properties={"text": text, "category": "text", "rank": i, "even": i % 2 == 0},
                                  uuid=object_id("text", i)))
    objects.append(DataObject(properties={"image": b64(samples[InputKind.IMAGE][0]),
                                          "audio": b64(samples[InputKind.AUDIO][0]), "category": "mixed", "rank": 9},
                              uuid=object_id("mixed", 0)))
    result = collection.data.insert_many(objects)
    assert not result.errors, {i: e.message for i, e in result.errors.items()}
    yield collection
    client.collections.delete(name)


@pytest.mark.parametrize("kind", [InputKind.TEXT, *MEDIA_KINDS], ids=lambda k: k.value)
def test_each_near_operator_finds_the_object_holding_exactly_that_input(media_collection, samples, kind):
    index = 1
    value = TEXTS[index] if kind is InputKind.TEXT else samples[kind][index]
    result = search(media_collection, [QueryInput.of(kind, value)], limit=3)
    expected_operator = {InputKind.IMU: "nearIMU"}.get(kind, "near" + kind.value.capitalize())
    assert result.operator == expected_operator
    top, runner_up = result.hits[0], result.hits[1]
    assert top.uuid == object_id(kind, index)
    assert top.distance == pytest.approx(0.0, abs=1e-4)
    assert runner_up.distance > top.distance + 1e-3


def test_where_filters_restrict_the_results(media_collection, samples):
    image = QueryInput.of(InputKind.IMAGE, samples[InputKind.IMAGE][0])
    result = search(media_collection, [image], where=["category=audio"], limit=10)
    assert {h.properties["category"] for h in result.hits} == {"audio"}
    assert len(result.hits) == 3
    result = search(media_collection, [image], where=["rank>=1", "category!=mixed", "even=true"], limit=20)
    assert result.hits
    assert all(h.properties["rank"] >= 1 and h.properties["even"] is True and h.properties["category"] != "mixed"
               for h in result.hits)
    assert object_id(InputKind.IMAGE, 0) not in {h.uuid for h in result.hits}  # rank 0 is filtered out
    result = search(media_collection, [image], where=["category~mix*"], limit=5)
    assert [h.uuid for h in result.hits] == [object_id("mixed", 0)]
    with pytest.raises(QueryError, match="not a valid int"):
        search(media_collection, [image], where=["rank=three"])
    with pytest.raises(QueryError, match="no such property"):
        search(media_collection, [image], where=["colour=red"])


def test_hybrid_ranks_by_keywords_and_by_vector(media_collection):
    query = [QueryInput.of(InputKind.TEXT, "echo")]
    keyword_only = search(media_collection, query, hybrid_alpha=0.0, limit=5)
    assert keyword_only.operator == "hybrid"
    assert [h.properties["text"] for h in keyword_only.hits] == ["delta echo foxtrot"]  # only it has the word
    vector_only = search(media_collection, [QueryInput.of(InputKind.TEXT, "golf hotel india")], hybrid_alpha=1.0,
                         limit=3)
    near = search(media_collection, [QueryInput.of(InputKind.TEXT, "golf hotel india")], limit=3)
    assert [h.uuid for h in vector_only.hits] == [h.uuid for h in near.hits]
    assert vector_only.hits[0].uuid == object_id("text", 2)
    filtered = search(media_collection, [QueryInput.of(InputKind.TEXT, "alpha")], hybrid_alpha=0.5,
                      where=["category=text", "rank>=1"], limit=10)
    assert filtered.hits
    assert {h.properties["category"] for h in filtered.hits} == {"text"}
    assert object_id("text", 0) not in {h.uuid for h in filtered.hits}
    with pytest.raises(QueryError, match="needs a --text query"):
        search(media_collection, [QueryInput.of(InputKind.IMAGE, b"x")], hybrid_alpha=0.5)


def test_composed_image_and_audio_query_finds_the_object_holding_both(media_collection, samples, ours):
    inputs = [QueryInput.of(InputKind.IMAGE, samples[InputKind.IMAGE][0]),
              QueryInput.of(InputKind.AUDIO, samples[InputKind.AUDIO][0])]
    result = search(media_collection, inputs, weights=[0.5, 0.5], limit=3, server=ours)
    assert result.operator == "composed nearVector"
    assert result.hits[0].uuid == object_id("mixed", 0)
    assert result.hits[0].distance == pytest.approx(0.0, abs=1e-4)
    # Leaning on the image finds the image-only object first.
    lean = search(media_collection, inputs, weights=[1.0, 0.05], limit=3, server=ours)
    assert lean.hits[0].uuid == object_id(InputKind.IMAGE, 0)
    with pytest.raises(QueryError, match="--server"):
        search(media_collection, inputs)


def test_cli_search_prints_json_and_tables(media_collection, samples, cli, tmp_path: Path):
    audio = tmp_path / "query.wav"
    audio.write_bytes(samples[InputKind.AUDIO][2])
    code, out, err = cli("search", "--collection", media_collection.name, "--audio", str(audio), "--limit", "2",
                         "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["operator"] == "nearAudio"
    assert payload["results"][0]["uuid"] == object_id(InputKind.AUDIO, 2)
    assert payload["results"][0]["distance"] == pytest.approx(0.0, abs=1e-4)
    assert "audio" not in payload["results"][0]["properties"]  # blobs are not printed

    image = tmp_path / "query.png"
    image.write_bytes(samples[InputKind.IMAGE][0])
    code, out, err = cli("search", "--collection", media_collection.name, "--image", str(image), "--audio",
                         str(tmp_path / "query.wav"), "--weights", "1,0.05", "--limit", "1", "--json", server=True)
    assert code == 0, err
    assert json.loads(out)["results"][0]["uuid"] == object_id(InputKind.IMAGE, 0)

    code, out, err = cli("search", "--collection", media_collection.name, "--text", "echo", "--hybrid-alpha", "0",
                         "--where", "category=text")
    assert code == 0, err
    assert "hybrid" in out and "delta echo foxtrot" in out and "score" in out

    code, out, err = cli("search", "--collection", media_collection.name, "--image", str(tmp_path / "missing.png"))
    assert code == 2 and "cannot read the image file" in err and "Traceback" not in err


def test_classify_ranks_the_label_equal_to_the_input_first(cli, ours):
    code, out, err = cli("classify", "--labels", ",".join(TEXTS), "--text", TEXTS[1], "--json", connection=False,
                         server=True)
    assert code == 0, err
    scores = json.loads(out)
    assert scores[0]["label"] == TEXTS[1]
    assert scores[0]["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert sum(s["probability"] for s in scores) == pytest.approx(1.0, abs=1e-6)
    assert scores[0]["probability"] > 0.9


def test_classify_any_modality_is_a_softmax_of_the_text_scale_times_cosine(cli, ours, samples, tmp_path: Path):
    thermal = tmp_path / "hand.jpg"
    thermal.write_bytes(samples[InputKind.THERMAL][0])
    labels = ["a person", "a car", "a cup of tea"]
    code, out, err = cli("classify", "--labels", ",".join(labels), "--thermal", str(thermal), "--json",
                         connection=False, server=True)
    assert code == 0, err
    got = {s["label"]: s["probability"] for s in json.loads(out)}
    prompts = [f"a thermal image of {label}." for label in labels]  # the documented default template
    texts = ours.embed(InputKind.TEXT, prompts)
    query = ours.embed(InputKind.THERMAL, [samples[InputKind.THERMAL][0]])[0]
    scale = ours.meta()["logitScales"]["text"]
    assert scale == pytest.approx(np.exp(4.2), rel=1e-4)  # the checkpoint's learned text scale
    logits = scale * np.array([cosine(t, query) for t in texts])
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    for label, probability in zip(labels, expected, strict=True):
        assert got[label] == pytest.approx(probability, abs=1e-4)
