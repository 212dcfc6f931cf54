"""Stock Weaviate (v1.39, built from its Go module) against our server with API keys and TLS, with
nothing changed in Weaviate: the key rides in BIND_INFERENCE_API as the URL's password (Go sends it
as `Authorization: Basic`), and an https:// URL is verified against a test CA given to Weaviate with
SSL_CERT_FILE. Every kind is inserted and searched; with a key our server no longer accepts, Weaviate's
errors say 401 and nothing is vectorized; and neither Weaviate's log (at debug level) nor ours holds
the key. One Weaviate per scenario, started here."""

from __future__ import annotations

import base64
import json
import sys
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from weaviate.classes.data import DataObject
from weaviate.exceptions import UnexpectedStatusCodeError, WeaviateInsertManyAllFailedError

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.server.auth import generate_key
from imagebind_vectorizer.server.watch import RELOAD_INTERVAL_S
from imagebind_vectorizer.weaviate.client import connect
from imagebind_vectorizer.weaviate.collections import create_collection, make_spec
from imagebind_vectorizer.weaviate.errors import WeaviateConnectError, WeaviateSideError
from imagebind_vectorizer.weaviate.local import LocalServerError, LocalVectorizer, LocalWeaviate
from imagebind_vectorizer.weaviate.search import QueryInput, search
from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient
from tests.certs import TestCA
from tests.e2e.conftest import e2e_serve_args
from tests.e2e.support import cosine
from tests.server.support import sample_value, wait_until

pytestmark = pytest.mark.weaviate

KINDS = [InputKind.TEXT, InputKind.IMAGE, InputKind.AUDIO, InputKind.VIDEO, InputKind.DEPTH, InputKind.THERMAL,
         InputKind.IMU]
TEXTS = ["alpha bravo charlie", "delta echo foxtrot"]


@dataclass
class Stack:
    """Our server and a Weaviate that calls it with `key` in BIND_INFERENCE_API."""

    vectorizer: LocalVectorizer
    weaviate: LocalWeaviate
    key: str
    key_file: Path
    ca_file: str | None

    def ours(self, key: str | None = None) -> VectorizerClient:
        return VectorizerClient(self.vectorizer.url, api_key=key or self.key, ca_file=self.ca_file)

    def items_embedded(self) -> float:
        metrics = self.ours()._request("GET", "/metrics")[1].decode()
        return sum(sample_value(metrics, "imagebind_items_total", kind=kind.value) for kind in KINDS)


def _start(tmp: Path, e2e_checkpoint: Path, tiny_config_path: Path, *, tls: bool) -> Iterator[Stack]:
    key = generate_key()
    key_file = tmp / "api-keys"
    key_file.write_text(key + "\n")
    serve_args = [*e2e_serve_args(e2e_checkpoint, tiny_config_path), "--api-key-file", str(key_file)]
    ca_file = None
    extra_env = {}
    if tls:
        ca = TestCA("e2e test CA")
        cert, private_key = ca.server("imagebind-vectorizer e2e").write(tmp, "server")
        ca_file = str(ca.write(tmp / "ca.pem"))
        serve_args += ["--tls-cert-file", str(cert), "--tls-key-file", str(private_key)]
        extra_env["SSL_CERT_FILE"] = ca_file  # Go's crypto/x509 reads it in place of the system bundle
    vectorizer = LocalVectorizer(serve_args, log_path=tmp / "vectorizer.log", python=sys.executable,
                                 tls_ca_file=ca_file)
    scheme, rest = vectorizer.url.split("://")
    weaviate = LocalWeaviate(f"{scheme}://weaviate:{key}@{rest}", data_dir=tmp / "data", log_path=tmp / "weaviate.log",
                             modules_client_timeout_s=300, extra_env={"LOG_LEVEL": "debug", **extra_env})
    try:
        vectorizer.start(timeout=180)
        weaviate.start(timeout=180)
    except LocalServerError as exc:
        vectorizer.stop()
        weaviate.cleanup()
        pytest.fail(f"the secured stack did not start: {exc}\n--- our log:\n{vectorizer.log_tail()}", pytrace=False)
    yield Stack(vectorizer, weaviate, key, key_file, ca_file)
    weaviate.cleanup()
    vectorizer.stop()
    # Both processes have exited: their whole output is on disk. The key is in neither.
    for name, process in (("Weaviate", weaviate), ("our server", vectorizer)):
        text = process.log_path.read_text(errors="replace")
        assert key not in text, f"{name}'s log holds the key"


@pytest.fixture(scope="module")
def http_stack(tmp_path_factory, e2e_checkpoint, tiny_config_path) -> Iterator[Stack]:
    yield from _start(tmp_path_factory.mktemp("secured-http"), e2e_checkpoint, tiny_config_path, tls=False)


@pytest.fixture(scope="module")
def https_stack(tmp_path_factory, e2e_checkpoint, tiny_config_path) -> Iterator[Stack]:
    yield from _start(tmp_path_factory.mktemp("secured-https"), e2e_checkpoint, tiny_config_path, tls=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _every_kind_is_inserted_and_found(stack: Stack, samples) -> None:
    client = connect(stack.weaviate.url, grpc_port=stack.weaviate.grpc_port, timeout_s=300)
    name = f"E2eSecured{uuidlib.uuid4().hex[:6]}"
    try:
        collection = create_collection(client, make_spec(name))
        values = {InputKind.TEXT: TEXTS, **{kind: samples[kind][:2] for kind in KINDS if kind is not InputKind.TEXT}}
        ids: dict[tuple[InputKind, int], str] = {}
        objects = []
        for kind, items in values.items():
            for i, value in enumerate(items):
                ids[kind, i] = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"secured/{kind.value}/{i}"))
                prop = value if kind is InputKind.TEXT else b64(value)
                objects.append(DataObject(properties={kind.value: prop}, uuid=ids[kind, i]))
        result = collection.data.insert_many(objects)
        assert not result.errors, {i: e.message for i, e in result.errors.items()}
        ours = stack.ours()
        for kind, items in values.items():
            stored = collection.query.fetch_object_by_id(ids[kind, 1], include_vector=True).vector["default"]
            assert cosine(stored, ours.embed(kind, [items[1]])[0]) >= 0.9999, kind
            found = search(collection, [QueryInput.of(kind, items[1])], limit=2)
            assert found.hits[0].uuid == ids[kind, 1], kind
            assert found.hits[0].distance == pytest.approx(0.0, abs=1e-4), kind
    finally:
        if client.collections.exists(name):
            client.collections.delete(name)
        client.close()


def test_weaviate_with_the_key_in_its_url_inserts_and_finds_every_kind(http_stack: Stack, samples) -> None:
    _every_kind_is_inserted_and_found(http_stack, samples)
    meta = connect(http_stack.weaviate.url, grpc_port=http_stack.weaviate.grpc_port)
    try:
        module = meta.get_meta()["modules"]["multi2vec-bind"]
        assert module["model"] == "ImageBindModel", "our /meta, fetched by Weaviate with its key"
    finally:
        meta.close()


def test_weaviate_over_https_with_a_private_ca(https_stack: Stack, samples) -> None:
    assert https_stack.vectorizer.url.startswith("https://")
    _every_kind_is_inserted_and_found(https_stack, samples)
    with pytest.raises(WeaviateConnectError):  # our own client without the test CA does not trust it
        VectorizerClient(https_stack.vectorizer.url, api_key=https_stack.key).meta()


def test_a_key_the_server_no_longer_accepts_fails_with_401_and_vectorizes_nothing(http_stack: Stack, samples) -> None:
    """Rotate our server's keys to exclude Weaviate's: its inserts and searches fail with Weaviate's own
    401 message, nothing reaches the model, and nothing is stored. Putting the key back heals it,
    with neither process restarted."""
    replacement = generate_key()
    old_key = http_stack.key
    http_stack.key_file.write_text(replacement + "\n")
    wait_until(lambda: _rejected(http_stack.ours(old_key)), timeout=10 * RELOAD_INTERVAL_S + 10)
    http_stack.key = replacement
    client = connect(http_stack.weaviate.url, grpc_port=http_stack.weaviate.grpc_port, timeout_s=120)
    name = f"E2eWrongKey{uuidlib.uuid4().hex[:6]}"
    try:
        collection = create_collection(client, make_spec(name))
        embedded = http_stack.items_embedded()
        with pytest.raises(WeaviateInsertManyAllFailedError) as failed:
            collection.data.insert_many([
                DataObject(properties={"text": "a text Weaviate cannot vectorize"}),
                DataObject(properties={"image": b64(samples[InputKind.IMAGE][0])})])
        assert "fail with status 401: invalid API key" in str(failed.value)  # Weaviate's words, our message
        with pytest.raises(UnexpectedStatusCodeError, match=r"fail with status 401") as single:
            collection.data.insert({"audio": b64(samples[InputKind.AUDIO][0])})
        assert old_key not in str(failed.value) + str(single.value)
        with pytest.raises(WeaviateSideError, match=r"\b401\b"):
            search(collection, [QueryInput.of(InputKind.TEXT, "anything")])
        assert len(collection) == 0, "nothing stored"
        assert http_stack.items_embedded() == embedded, "nothing vectorized"

        http_stack.key_file.write_text(f"{old_key}\n{replacement}\n")  # rotation: both valid, Weaviate heals
        http_stack.key = old_key
        wait_until(lambda: not _rejected(http_stack.ours(old_key)), timeout=10 * RELOAD_INTERVAL_S + 10)
        result = collection.data.insert_many([DataObject(properties={"text": TEXTS[0]})])
        assert not result.errors
        stored = collection.query.fetch_objects(include_vector=True).objects[0].vector["default"]
        assert np.allclose(stored, http_stack.ours().embed(InputKind.TEXT, [TEXTS[0]])[0], atol=1e-5)
    finally:
        if client.collections.exists(name):
            client.collections.delete(name)
        client.close()


def _rejected(client: VectorizerClient) -> bool:
    try:
        client.meta(refresh=True)
    except WeaviateConnectError as exc:
        return "requires an API key" in str(exc)
    return False


def test_the_cli_reaches_a_server_with_a_key_and_a_private_ca(https_stack: Stack, samples, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A composed search and a classification, both of which embed their inputs on our server: the key
    from IMAGEBIND_SERVER_API_KEY, the private CA from --server-ca-file."""
    from imagebind_vectorizer.cli import main

    client = connect(https_stack.weaviate.url, grpc_port=https_stack.weaviate.grpc_port, timeout_s=300)
    name = f"E2eSecuredCli{uuidlib.uuid4().hex[:6]}"
    image = tmp_path / "query.png"
    image.write_bytes(samples[InputKind.IMAGE][0])
    try:
        collection = create_collection(client, make_spec(name))
        both = str(uuidlib.uuid4())
        result = collection.data.insert_many([
            DataObject(properties={"text": TEXTS[0], "image": b64(samples[InputKind.IMAGE][0])}, uuid=both),
            DataObject(properties={"text": TEXTS[1]})])
        assert not result.errors
        server = ["--server", https_stack.vectorizer.url, "--server-ca-file", str(https_stack.ca_file)]
        connection = ["--weaviate-url", https_stack.weaviate.url,
                      "--weaviate-grpc-port", str(https_stack.weaviate.grpc_port)]
        search_args = ["search", "--collection", name, "--text", TEXTS[0], "--image", str(image), "--json",
                       *connection, *server]
        classify_args = ["classify", "--labels", ",".join(TEXTS), "--text", TEXTS[1], "--json", *server]

        monkeypatch.delenv("IMAGEBIND_SERVER_API_KEY", raising=False)
        capsys.readouterr()
        assert main(search_args) == 2
        assert "requires an API key" in capsys.readouterr().err
        monkeypatch.setenv("IMAGEBIND_SERVER_API_KEY", https_stack.key)
        assert main(search_args) == 0
        hits = json.loads(capsys.readouterr().out)
        assert hits["results"][0]["uuid"] == both
        assert main(classify_args) == 0
        scores = json.loads(capsys.readouterr().out)
        assert scores[0]["label"] == TEXTS[1]
    finally:
        if client.collections.exists(name):
            client.collections.delete(name)
        client.close()
