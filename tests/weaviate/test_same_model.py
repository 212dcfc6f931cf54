"""The composed-query check compares every /meta field that changes a vector (no Weaviate needed:
the two metas are what Weaviate's /v1/meta relays and what our server's /meta answers)."""

from __future__ import annotations

from typing import Any

import pytest

from imagebind_vectorizer.weaviate.search import check_same_model

META = {"server": "imagebind-vectorizer", "name": "imagebind_huge", "dimensions": 1024,
        "preprocessing": "official", "outputScaling": "official", "checkpoint": {"sha256": "ab" * 32}}


class WeaviateMeta:
    def __init__(self, module: dict[str, Any]) -> None:
        self.module = module

    def get_meta(self) -> dict[str, Any]:
        return {"modules": {"multi2vec-bind": self.module}}


class ServerMeta:
    url = "http://127.0.0.1:8011"

    def __init__(self, meta: dict[str, Any]) -> None:
        self._meta = meta

    def meta(self) -> dict[str, Any]:
        return self._meta


def test_the_same_model_gives_no_warning() -> None:
    assert check_same_model(WeaviateMeta(META), ServerMeta(dict(META))) is None


@pytest.mark.parametrize(("key", "value"), [("name", "tiny"), ("dimensions", 32),
                                            ("preprocessing", "weaviate-legacy"), ("outputScaling", "unit")])
def test_a_field_that_changes_vectors_gives_a_warning_naming_it(key: str, value: object) -> None:
    warning = check_same_model(WeaviateMeta(META), ServerMeta(META | {key: value}))
    assert warning is not None and f"{key}=" in warning and repr(value) in warning


def test_other_checkpoints_give_a_warning() -> None:
    warning = check_same_model(WeaviateMeta(META), ServerMeta(META | {"checkpoint": {"sha256": "cd" * 32}}))
    assert warning is not None and "different checkpoints" in warning
