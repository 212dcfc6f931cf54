"""The real Weaviate reaches readiness with multi2vec-bind enabled and reports our /meta."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.conftest import TINY_DIM

pytestmark = pytest.mark.weaviate


def test_weaviate_is_ready_and_shows_our_meta_under_the_module(weaviate_server, client, ours):
    with urllib.request.urlopen(f"{weaviate_server.url}/v1/.well-known/ready", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(f"{weaviate_server.url}/v1/meta", timeout=10) as response:
        meta = json.load(response)
    module = meta["modules"]["multi2vec-bind"]
    expected = ours.meta(refresh=True)
    assert module == expected  # Weaviate relays our /meta verbatim
    assert module["server"] == "imagebind-vectorizer"
    assert module["dimensions"] == TINY_DIM
    assert module["outputScaling"] == "unit"
    assert set(meta["modules"]) == {"multi2vec-bind"}  # only the module we enabled
    if weaviate_server.process is not None:
        assert meta["version"] == "1.39.0"
    assert client.is_ready()
