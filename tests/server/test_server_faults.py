"""500 only for real server faults. A fault inside the model (here a RuntimeError raised in a text
trunk block, as a device error or running out of memory would) is the server's, not the client's:
HTTP answers 500 with Weaviate's JSON error body and gRPC `INTERNAL`; it fails only the request
that met it, and the server goes on. Client errors stay 4xx (every case in test_bad_input.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
import torch

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.settings import Settings
from tests.server.support import (
    InProcessServer,
    LoopThread,
    grpc_stub,
    http_vectorize,
    item,
    start_server,
    vectorize_body,
)

FAULT = "simulated device fault"


@pytest.fixture(scope="module")
def running(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder) -> Iterator[InProcessServer]:
    server = start_server(loop_thread, server_settings.replace(cache_size=0), shared_embedder)
    yield server
    server.stop()


@contextmanager
def model_fault(model: torch.nn.Module, encoder: str) -> Iterator[threading.Event]:
    """Every forward through the first trunk block of `encoder` raises while inside; yields an
    event set once the fault was hit (so a test knows the request reached the model)."""
    hit = threading.Event()

    def hook(module: torch.nn.Module, args: Any) -> None:
        hit.set()
        raise RuntimeError(FAULT)

    handle = model.encoders[encoder].trunk.blocks[0].register_forward_pre_hook(hook)
    try:
        yield hit
    finally:
        handle.remove()


def test_a_fault_in_the_model_is_500_json_and_internal_and_the_server_goes_on(
        running: InProcessServer, shared_embedder: Embedder) -> None:
    channel, stub = grpc_stub(running.grpc_target)
    try:
        with model_fault(shared_embedder.model, "text") as hit:
            response = http_vectorize(running.http_port, vectorize_body(["a text that meets a model fault"]))
            assert hit.is_set(), "the request never reached the model"
            with pytest.raises(grpc.RpcError) as caught:
                stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "an rpc that meets it")]), timeout=30)
        assert response.status == 500, response.body
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {"error": f"server error: RuntimeError: {FAULT}"}
        assert caught.value.code() is grpc.StatusCode.INTERNAL
        assert caught.value.details() == f"server error: RuntimeError: {FAULT}"
        # only those requests failed: the model thread and both transports serve the next ones
        after = http_vectorize(running.http_port, vectorize_body(["after the fault"]))
        assert after.status == 200 and len(after.json()["textVectors"]) == 1
        rpc = stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "after the fault")]), timeout=30)
        assert len(rpc.embeddings) == 1
    finally:
        channel.close()
