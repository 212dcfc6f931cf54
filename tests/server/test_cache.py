"""The vector cache seen through the server: repeated text is answered from it with the identical
vector (over either transport), it never holds more than cache_size entries, and its keys include
the model id, so different weights never share entries."""

from __future__ import annotations

import dataclasses

import numpy as np

from imagebind_vectorizer.engine.cache import content_key
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.server.support import (
    LoopThread,
    embedding_vector,
    grpc_stub,
    http_vectorize,
    item,
    start_server,
    vectorize_body,
    wait_until,
)


def text_vector(port: int, text: str) -> np.ndarray:
    response = http_vectorize(port, vectorize_body([text]))
    assert response.status == 200
    return np.asarray(response.json()["textVectors"][0], dtype=np.float32)


def test_repeated_text_hits_the_cache_with_identical_vectors(loop_thread: LoopThread, server_settings: Settings,
                                                             shared_embedder: Embedder) -> None:
    running = start_server(loop_thread, server_settings.replace(cache_size=3), shared_embedder)
    channel, stub = grpc_stub(running.grpc_target)

    def lookups(result: str) -> float:
        return running.sample("imagebind_cache_lookups_total", {"kind": "text", "result": result})

    try:
        first = text_vector(running.http_port, "a cached sentence")
        assert (lookups("hit"), lookups("miss")) == (0, 1)
        again = text_vector(running.http_port, "a cached sentence")
        assert lookups("hit") == 1 and np.array_equal(first, again)
        over_grpc = stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "a cached sentence")]), timeout=30)
        assert lookups("hit") == 2 and np.array_equal(embedding_vector(over_grpc.embeddings[0]), first)
        calls = running.sample("imagebind_batch_rows_count", {"kind": "text"})
        assert calls == 1  # the model saw the sentence once

        for i in range(10):  # bounded: the least recently used entries go
            text_vector(running.http_port, f"filler {i}")
            assert len(running.engine.cache) <= 3
        assert len(running.engine.cache) == 3
        text_vector(running.http_port, "a cached sentence")  # evicted by now: computed again
        assert lookups("hit") == 2

        # only text is cached by default: the same image twice is computed twice
        image = media.image_bytes("PNG", 32, 32)
        for _ in range(2):
            assert http_vectorize(running.http_port, vectorize_body(images=[image])).status == 200
        assert running.sample("imagebind_batch_items_count", {"kind": "image"}) == 2
    finally:
        channel.close()
        running.stop()


def test_cache_keys_include_the_model_id(loop_thread: LoopThread, server_settings: Settings,
                                         shared_embedder: Embedder) -> None:
    key = content_key("text", "same", "model-a", "official/unit")
    assert key == content_key("text", "same", "model-a", "official/unit")
    assert key != content_key("text", "same", "model-b", "official/unit")
    assert key != content_key("text", "same", "model-a", "official/official")

    checkpoint = start_server(loop_thread, server_settings, shared_embedder)
    random = start_server(loop_thread, server_settings.replace(checkpoint=None, random_weights=True))
    try:
        ids = [s.engine.embedder.checkpoint.model_id for s in (checkpoint, random)]  # type: ignore[union-attr]
        assert ids[0] != ids[1]
        vectors = [text_vector(s.http_port, "the same words") for s in (checkpoint, random)]
        assert not np.allclose(vectors[0], vectors[1])
        keys = [set(s.engine.cache._entries) for s in (checkpoint, random)]
        assert keys[0] and keys[1] and not keys[0] & keys[1]
    finally:
        checkpoint.stop()
        random.stop()


def test_cache_keys_stay_put_when_the_checkpoint_digest_arrives(loop_thread: LoopThread,
                                                                server_settings: Settings) -> None:
    """An unrecorded checkpoint's sha256 is computed in the background, which changes its model id
    mid-flight; the engine keys its cache by the id it started with, so hits continue."""
    running = start_server(loop_thread, server_settings.replace(cache_size=10))
    try:
        embedder = running.engine.embedder
        assert embedder is not None
        wait_until(lambda: embedder.checkpoint.sha256 is not None)  # let the real background digest finish first
        first = text_vector(running.http_port, "before the digest")
        # what the digest thread does when it finishes: a new record with the digest
        embedder.checkpoint = dataclasses.replace(embedder.checkpoint, sha256="0" * 64)
        again = text_vector(running.http_port, "before the digest")
        assert running.sample("imagebind_cache_lookups_total", {"kind": "text", "result": "hit"}) == 1
        assert np.array_equal(first, again)
    finally:
        running.stop()
