"""Fixtures of the server tests: one shared event loop for in-process servers, the default server
(tiny checkpoint, all encoders, gRPC on), and the reference embedder for expected vectors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.settings import Settings
from tests.server.support import InProcessServer, LoopThread, start_server


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def server_settings(tiny_settings: Settings) -> Settings:
    """The tiny model on loopback, any free ports, a batch window short enough for tests."""
    return tiny_settings.replace(host="127.0.0.1", port=0, workers=2, max_wait_ms=20.0,
                                 log_level="warning")


@pytest.fixture(scope="session")
def shared_embedder(server_settings: Settings) -> Embedder:
    """One loaded tiny model shared by the servers that need no special load behaviour."""
    return Embedder(server_settings, progress=False)


@pytest.fixture(scope="session")
def reference(tiny_embedder: Embedder) -> Embedder:
    """Vectors the servers must reproduce: `Embedder.embed`, no server involved."""
    return tiny_embedder


@pytest.fixture(scope="module")
def server(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder) -> Iterator[InProcessServer]:
    running = start_server(loop_thread, server_settings, shared_embedder)
    yield running
    running.stop()
