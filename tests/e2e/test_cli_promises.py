"""Command-line promises against the real Weaviate: `ingest --overwrite` re-inserts (e.g. to update
metadata) where a plain rerun skips what is stored, manifest cells `a;b` arrive as arrays, and a
composed query warns when the server that embeds it loads other weights than the one Weaviate uses
(their `/meta` differ)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.kinds import ENCODERS, InputKind
from imagebind_vectorizer.model.checkpoint import save_official_checkpoint
from imagebind_vectorizer.model.imagebind import random_model
from imagebind_vectorizer.weaviate.local import LocalVectorizer
from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient
from tests.e2e.conftest import e2e_serve_args
from tests.helpers import write_files

pytestmark = pytest.mark.weaviate


def stored(client, name: str) -> list[dict]:
    return [o.properties for o in client.collections.get(name).query.fetch_objects(limit=10).objects]


def test_overwrite_reinserts_with_new_metadata_where_a_rerun_skips(client, cli, samples, tmp_path: Path,
                                                                   collection_name: str) -> None:
    folder = write_files(tmp_path / "media", {
        "photo.png": samples[InputKind.IMAGE][0],
        "list.csv": "file,title,tags,rating\nphoto.png,first,a;b,1\n",
    })
    manifest = folder / "list.csv"
    code, _, err = cli("collection", "create", collection_name, "--property", "tags:text[]",
                       "--property", "rating:int")
    assert code == 0, err
    ingest = ("ingest", str(folder), "--collection", collection_name, "--manifest", str(manifest), "--no-progress")
    code, out, err = cli(*ingest)
    assert code == 0 and f"{collection_name}: 1 inserted, 0 already present" in out, out + err
    [first] = stored(client, collection_name)
    assert (first["title"], first["tags"], first["rating"]) == ("first", ["a", "b"], 1)

    manifest.write_text("file,title,tags,rating\nphoto.png,second,c;d;e,2\n")
    code, out, err = cli(*ingest)  # same content, same UUID: nothing is sent again
    assert code == 0 and f"{collection_name}: 0 inserted, 1 already present" in out, out + err
    assert stored(client, collection_name)[0]["title"] == "first"

    code, out, err = cli(*ingest, "--overwrite")
    assert code == 0 and f"{collection_name}: 1 inserted, 0 already present" in out, out + err
    [updated] = stored(client, collection_name)
    assert (updated["title"], updated["tags"], updated["rating"]) == ("second", ["c", "d", "e"], 2)


def wait_for_digest(server: VectorizerClient, timeout: float = 60) -> str:
    """The checkpoint's sha256 from /meta (a checkpoint without a recorded digest gets it hashed in
    the background after start-up)."""
    give_up = time.monotonic() + timeout
    while True:
        digest = (server.meta(refresh=True).get("checkpoint") or {}).get("sha256")
        if digest or time.monotonic() > give_up:
            return digest
        time.sleep(0.2)


@pytest.fixture(scope="module")
def other_weights_server(tiny_config, tiny_config_path: Path,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalVectorizer]:
    """Our server on the same tiny architecture with other weights: what a composed query would
    wrongly use if --server pointed at a server that is not the one behind Weaviate."""
    folder = tmp_path_factory.mktemp("other-weights")
    model = random_model(tiny_config, ENCODERS, seed=12)
    with torch.no_grad():
        model.encoders["text"].logit_scale.log_logit_scale.fill_(4.2)
    save_official_checkpoint(model, folder / "other.pth")
    server = LocalVectorizer([*e2e_serve_args(folder / "other.pth", tiny_config_path), "--modalities", "vision,audio"],
                             log_path=folder / "serve.log", python=sys.executable)
    with server:
        yield server


def test_a_composed_query_warns_when_its_servers_meta_differs_from_weaviates(
        client, cli, ours: VectorizerClient, samples, tmp_path: Path, collection_name: str,
        other_weights_server: LocalVectorizer) -> None:
    folder = write_files(tmp_path / "media", {"photo.png": samples[InputKind.IMAGE][0],
                                              "sound.wav": samples[InputKind.AUDIO][0]})
    assert cli("collection", "create", collection_name)[0] == 0
    code, out, err = cli("ingest", str(folder), "--collection", collection_name, "--no-progress")
    assert code == 0, out + err
    other = VectorizerClient(other_weights_server.url)
    digests = wait_for_digest(ours), wait_for_digest(other)
    assert all(digests) and digests[0] != digests[1]

    query = ("search", "--collection", collection_name, "--image", str(folder / "photo.png"),
             "--audio", str(folder / "sound.wav"), "--weights", "0.5,0.5", "--json", "--no-progress")
    code, out, err = cli(*query, server=True)  # the server Weaviate uses: no warning
    assert code == 0, err
    assert "Weaviate's vectorizer" not in err

    code, out, err = cli(*query, "--server", other_weights_server.url)
    assert code == 0, err  # a warning, not an error: the search still runs
    assert f"warning: Weaviate's vectorizer and {other_weights_server.url} load different checkpoints " \
           f"({digests[0][:12]} vs {digests[1][:12]})" in err
