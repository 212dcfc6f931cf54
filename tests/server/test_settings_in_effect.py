"""Settings that README promises change what the server does, seen where they act: `--cache-kinds`
caches the kinds named (not only text), `--cache-size 0` caches nothing and hashes nothing,
`--no-text-trim` runs the text trunk over all 77 positions (with the same vectors), and
`--torch-threads` sets torch's intra-op threads. Each starts from the `serve` command line."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from imagebind_vectorizer.cli import build_parser
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.server.support import InProcessServer, LoopThread, http_vectorize, start_server, vectorize_body


def from_serve_flags(base: Settings, *argv: str) -> Settings:
    """`base` with the settings that `serve ARGV` sets on top of it."""
    parsed = Settings.load(build_parser().parse_args(["serve", *argv]), env={})
    default = Settings()
    changed = {name: value for name, value in vars(parsed).items() if value != getattr(default, name)}
    return base.replace(**changed)


def lookups(server: InProcessServer, kind: InputKind, result: str) -> float:
    return server.sample("imagebind_cache_lookups_total", {"kind": kind.value, "result": result})


def computed(server: InProcessServer, kind: InputKind) -> float:
    """Items of `kind` the model computed (cache hits never reach it)."""
    return server.sample("imagebind_batch_items_count", {"kind": kind.value})


def vectors(server: InProcessServer, body: bytes, key: str) -> list[list[float]]:
    response = http_vectorize(server.http_port, body)
    assert response.status == 200, response.body
    return response.json()[key]


def test_cache_kinds_caches_the_kinds_named(loop_thread: LoopThread, server_settings: Settings,
                                            shared_embedder: Embedder) -> None:
    settings = from_serve_flags(server_settings, "--cache-kinds", "image,audio", "--no-warmup")
    running = start_server(loop_thread, settings, shared_embedder)
    try:
        image = media.image_bytes("PNG", 32, 32, seed=5)
        first = vectors(running, vectorize_body(images=[image]), "imageVectors")
        again = vectors(running, vectorize_body(images=[image]), "imageVectors")
        assert first == again
        assert computed(running, InputKind.IMAGE) == 1, "the second image came from the cache"
        assert (lookups(running, InputKind.IMAGE, "miss"), lookups(running, InputKind.IMAGE, "hit")) == (1, 1)
        # text is not named, so it is no longer cached
        for _ in range(2):
            vectors(running, vectorize_body(["twice the same words"]), "textVectors")
        assert computed(running, InputKind.TEXT) == 2
        assert lookups(running, InputKind.TEXT, "miss") + lookups(running, InputKind.TEXT, "hit") == 0
    finally:
        running.stop()


def test_cache_size_zero_caches_nothing(loop_thread: LoopThread, server_settings: Settings,
                                        shared_embedder: Embedder) -> None:
    settings = from_serve_flags(server_settings, "--cache-size", "0", "--cache-kinds", "text,image", "--no-warmup")
    running = start_server(loop_thread, settings, shared_embedder)
    try:
        image = media.image_bytes("PNG", 32, 32, seed=6)
        for _ in range(2):
            vectors(running, vectorize_body(["twice the same words"], images=[image]), "textVectors")
        assert (computed(running, InputKind.TEXT), computed(running, InputKind.IMAGE)) == (2, 2)
        assert len(running.engine.cache) == 0
        for kind in (InputKind.TEXT, InputKind.IMAGE):  # not even looked up: no hashing for a disabled cache
            assert lookups(running, kind, "miss") + lookups(running, kind, "hit") == 0
    finally:
        running.stop()


@pytest.fixture
def text_positions() -> Iterator[tuple[list[int], Callable[[Embedder], None]]]:
    """The number of token positions each text stem call of an embedder passed on to the trunk."""
    seen: list[int] = []
    handles = []

    def watch(embedder: Embedder) -> None:
        stem = embedder.model.encoders["text"].stem
        handles.append(stem.register_forward_hook(lambda module, args, out: seen.append(int(out.shape[1]))))

    yield seen, watch
    for handle in handles:
        handle.remove()


def test_no_text_trim_runs_all_77_positions_with_the_same_vectors(server_settings: Settings, text_positions) -> None:
    seen, watch = text_positions
    texts = ["a dog", "a dog in the rain"]
    trimmed = Embedder(from_serve_flags(server_settings, "--text-trim"), progress=False)
    untrimmed = Embedder(from_serve_flags(server_settings, "--no-text-trim"), progress=False)
    watch(trimmed)
    expected = trimmed.embed(InputKind.TEXT, texts)
    assert seen and max(seen) < 77, seen  # the default cuts at the batch's last end-of-text token
    seen.clear()
    watch(untrimmed)
    got = untrimmed.embed(InputKind.TEXT, texts)
    assert seen and min(seen) == 77, seen
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)  # the cut is exact under the causal mask


def test_torch_threads_sets_torchs_intra_op_threads(server_settings: Settings) -> None:
    before = torch.get_num_threads()
    wanted = before + 1  # differs from whatever torch chose on this machine
    try:
        Embedder(from_serve_flags(server_settings, "--torch-threads", str(wanted), "--modalities", "text"),
                 progress=False)
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)
