"""The engine on its own, no transport: it reports a bad item by (kind, index) in its own terms,
admits forward passes by the per-kind table, and describes the loaded model with one typed record."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import pytest

from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.errors import InputError, NotReadyError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess.profiles import Profile
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.runtime.info import ModelInfo
from imagebind_vectorizer.settings import OutputScaling, Settings
from tests import media

T = TypeVar("T")


def run_engine(settings: Settings, embedder: Embedder, work: Callable[[Engine], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = Engine(settings, embedder=embedder)
        await engine.start()
        try:
            return await work(engine)
        finally:
            await engine.close()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def settings(tiny_settings: Settings) -> Settings:
    return tiny_settings.replace(workers=1, max_wait_ms=1.0)


def test_a_bad_item_is_reported_by_kind_and_index_among_its_kind(settings: Settings,
                                                                  tiny_embedder: Embedder) -> None:
    good = media.image_bytes("PNG", 32, 32)
    request = {InputKind.TEXT: ["a", "b", "c"], InputKind.IMAGE: [good, good, b"not an image"]}
    with pytest.raises(InputError) as caught:
        run_engine(settings, tiny_embedder, lambda engine: engine.embed_request(request))
    error = caught.value
    assert (error.kind, error.index, error.reason) == (InputKind.IMAGE, 2, "decode")
    # no transport's vocabulary: the engine names the kind, transports rename it ("images[2]", "items[5]")
    assert str(error).startswith("image[2]: ")
    assert error.named("images", 2).field == "images" and error.named("items", 5).kind is InputKind.IMAGE


def test_a_disabled_kind_is_reported_by_kind(settings: Settings, make_embedder: Callable[..., Embedder]) -> None:
    text_only = settings.replace(modalities="text")
    with pytest.raises(InputError) as caught:
        run_engine(text_only, make_embedder(modalities="text"),
                   lambda engine: engine.embed_request({InputKind.AUDIO: [b"x"]}))
    assert (caught.value.kind, caught.value.index, caught.value.reason) == (InputKind.AUDIO, None, "disabled")


def test_admission_counts_each_kinds_forward_passes(settings: Settings, tiny_embedder: Embedder) -> None:
    """Two videos are 30 forward passes: more than a queue of 20 holds, refused before decoding."""
    small = settings.replace(queue_size=20)
    rows = InputKind.VIDEO.facts.rows_per_item
    with pytest.raises(InputError, match=f"holds {2 * rows} video forward passes"):
        run_engine(small, tiny_embedder, lambda engine: engine.embed_request({InputKind.VIDEO: [b"a", b"b"]}))
    vectors = run_engine(small, tiny_embedder, lambda engine: engine.embed(InputKind.TEXT, ["fits"] * 20))
    assert len(vectors) == 20


def test_model_info_is_typed_and_known_only_once_loaded(settings: Settings, tiny_embedder: Embedder) -> None:
    engine = Engine(settings, embedder=tiny_embedder)
    assert engine.model_info() is None
    with pytest.raises(NotReadyError):
        asyncio.run(engine.embed(InputKind.TEXT, ["early"]))

    async def loaded_info(engine: Engine) -> ModelInfo | None:
        return engine.model_info()

    info = run_engine(settings, tiny_embedder, loaded_info)
    assert isinstance(info, ModelInfo)
    assert info.architecture == "tiny" and info.dimensions == 32 and info.name == "imagebind-tiny"
    assert info.encoders == ("vision", "text", "audio", "depth", "thermal", "imu")
    assert info.input_kinds == tuple(InputKind)
    assert info.preprocessing is Profile.OFFICIAL and info.output_scaling is OutputScaling.UNIT
    assert info.checkpoint.path == settings.checkpoint and info.checkpoint.weights == "checkpoint"
    assert info.logit_scales["text"] == pytest.approx(np.exp(4.2), rel=1e-5)
    with pytest.raises(AttributeError):
        info.dimensions = 3  # type: ignore[misc]
