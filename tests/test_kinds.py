"""The per-kind facts live in one table (imagebind_vectorizer/kinds.py) and everything reads them
from it: change a fact there and every transport, the engine's admission and the Weaviate side
follow; no module re-types one; preprocessing produces the rows admission counts."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imagebind_vectorizer.kinds import ENCODERS, KINDS, WEAVIATE_KIND_ORDER, InputKind, parse_encoders
from imagebind_vectorizer.preprocess import PreprocessOptions, preprocess
from tests import media

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "imagebind_vectorizer"


def test_table_covers_every_kind_and_encoder() -> None:
    assert list(KINDS) == list(InputKind)
    assert sorted(WEAVIATE_KIND_ORDER) == sorted(InputKind)
    assert {facts.encoder for facts in KINDS.values()} == set(ENCODERS)
    for field in ("request_key", "response_key", "grpc_modality", "module_fields_key", "near_operator"):
        values = [getattr(facts, field) for facts in KINDS.values()]
        assert len(set(values)) == len(values), f"two kinds share a {field}"
    assert all("{label}" in facts.zero_shot_template for facts in KINDS.values())


def test_parse_accepts_names_request_keys_and_vision() -> None:
    for kind, facts in KINDS.items():
        assert InputKind.parse(kind.value.upper()) is kind
        assert InputKind.parse(facts.request_key) is kind
    assert InputKind.parse(" vision ") is InputKind.IMAGE
    with pytest.raises(ValueError, match="unknown input kind"):
        InputKind.parse("smell")
    assert parse_encoders("image,video,texts") == ("vision", "text")


def _one_item(kind: InputKind) -> bytes | str:
    return {
        InputKind.TEXT: "a dog",
        InputKind.IMAGE: media.image_bytes(),
        InputKind.AUDIO: media.audio_bytes(seconds=3.0),
        InputKind.VIDEO: media.video_bytes(seconds=3.0),
        InputKind.DEPTH: media.depth_png_16bit_mm(),
        InputKind.THERMAL: media.thermal_jpeg(),
        InputKind.IMU: media.imu_csv(media.imu_samples()),
    }[kind]


@pytest.mark.parametrize("kind", list(InputKind), ids=str)
def test_preprocessing_yields_the_rows_admission_counts(kind: InputKind) -> None:
    """The engine admits `rows_per_item` forward passes per item before decoding it; the
    preprocessor must produce exactly that many, or the queue's accounting drifts."""
    rows = preprocess(kind, _one_item(kind), PreprocessOptions())
    assert rows.shape[0] == kind.facts.rows_per_item


# Change the table in a fresh interpreter, then import the consumers: each must show the change.
_FOLLOWS = textwrap.dedent("""
    import asyncio, dataclasses, importlib, types
    from imagebind_vectorizer import kinds
    from imagebind_vectorizer.kinds import InputKind as K

    table = dict(kinds.KINDS)
    table[K.AUDIO] = dataclasses.replace(
        table[K.AUDIO], request_key="sounds", response_key="soundVectors", module_fields_key="soundFields",
        near_operator="nearSound", zero_shot_template="noise of {label}", rows_per_item=7)
    # gRPC names must exist in the proto: swap two kinds' enum members
    table[K.DEPTH], table[K.THERMAL] = (
        dataclasses.replace(table[K.DEPTH], grpc_modality=table[K.THERMAL].grpc_modality),
        dataclasses.replace(table[K.THERMAL], grpc_modality=table[K.DEPTH].grpc_modality))
    kinds.KINDS = types.MappingProxyType(table)

    http = importlib.import_module("imagebind_vectorizer.server.weaviate_http")
    vectorize_json = importlib.import_module("imagebind_vectorizer.server.vectorize_json")
    grpc_service = importlib.import_module("imagebind_vectorizer.server.grpc_service")
    collections = importlib.import_module("imagebind_vectorizer.weaviate.collections")
    classify = importlib.import_module("imagebind_vectorizer.weaviate.classify")
    vectorizer = importlib.import_module("imagebind_vectorizer.weaviate.vectorizer")
    from imagebind_vectorizer.engine.engine import Engine
    from imagebind_vectorizer.errors import InputError
    from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
    from imagebind_vectorizer.settings import Settings

    assert vectorize_json.REQUEST_FIELDS["sounds"] is K.AUDIO and "audio" not in vectorize_json.REQUEST_FIELDS
    assert http.RESPONSE_FIELDS[K.AUDIO] == "soundVectors" and http.FIELD_OF_KIND[K.AUDIO] == "sounds"
    limits = vectorize_json.BodyLimits(max_items=10, max_item_bytes=100, max_text_chars=100)
    parsed = asyncio.run(vectorize_json.parse_vectorize_body(b'{"sounds": ["AAAA"]}', limits))
    assert parsed == {K.AUDIO: [b"\\0\\0\\0"]}
    assert grpc_service.MODALITY_OF_KIND[K.DEPTH] == pb.MODALITY_THERMAL
    assert grpc_service.KIND_OF_MODALITY[pb.MODALITY_DEPTH] is K.THERMAL
    assert collections.MODULE_FIELD_KEYS[K.AUDIO] == "soundFields"
    spec = collections.VectorSpec("v", ("audio", "text"), {"audio": 2.0})
    assert spec.module_config() == {"textFields": ["text"], "soundFields": ["audio"],
                                    "weights": {"textFields": [1.0], "soundFields": [2.0]}}
    assert classify.DEFAULT_TEMPLATES[K.AUDIO] == "noise of {label}"
    assert K.parse("sounds") is K.AUDIO

    sent = {}
    client = vectorizer.VectorizerClient("http://127.0.0.1:1")
    client._request = lambda method, path, body=None: (sent.update(body=body), (500, b"{}"))[1]
    try:
        client.vectorize({K.AUDIO: [b"x"]})
    except Exception:
        pass
    assert sent["body"] == b'{"sounds": ["eA=="]}', sent

    engine = Engine(Settings(queue_size=20, random_weights=True))
    try:
        engine._admit([(K.AUDIO, i, b"", None) for i in range(3)])
        raise AssertionError("21 audio rows admitted into a queue of 20")
    except InputError as exc:
        assert "21 audio forward passes" in str(exc), exc
    print("follows")
""")


def test_every_consumer_follows_the_table() -> None:
    """Fails when a transport, the engine or the Weaviate side keeps its own copy of a fact."""
    result = subprocess.run([sys.executable, "-c", _FOLLOWS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("follows"), result.stderr[-3000:]


def _distinctive_facts() -> dict[str, InputKind]:
    """Fact values that could only be a copy of the table (kind names themselves are everywhere)."""
    found = {}
    for kind, facts in KINDS.items():
        for value in (facts.request_key, facts.response_key, facts.grpc_modality, facts.module_fields_key,
                      facts.near_operator, facts.zero_shot_template):
            if value != kind.value and value.replace("{label}", "").strip(" ."):
                found[value] = kind
    return found


def _string_constants(tree: ast.Module) -> list[tuple[int, str]]:
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_module_retypes_a_fact() -> None:
    facts = _distinctive_facts()
    copies = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if (path.name == "kinds.py" and path.parent == PACKAGE) or "proto_gen" in path.parts:
            continue
        for line, value in _string_constants(ast.parse(path.read_text(), str(path))):
            if value in facts:
                copies.append(f"{path.relative_to(ROOT)}:{line}: {value!r} (a fact of {facts[value].value})")
    assert not copies, "read these from imagebind_vectorizer.kinds instead:\n" + "\n".join(copies)
