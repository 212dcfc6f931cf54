"""The CLI around the database: collection management, download, and plain errors (no tracebacks)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagebind_vectorizer.cli import main


@pytest.mark.weaviate
def test_collection_create_show_delete(cli, client, collection_name):
    code, out, err = cli("collection", "create", collection_name, "--named-vector", "visual=image,video,depth",
                         "--named-vector", "sensors=imu,thermal,title", "--weights", "image=2,imu=3",
                         "--property", "year:int", "--property", "tags:text[]", "--property", "place")
    assert code == 0, err
    assert "vector visual: image=2, video=1, depth=1" in out
    assert "vector sensors: title (text)=1, imu=3, thermal=1" in out
    code, out, err = cli("collection", "show", collection_name, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["objects"] == 0
    assert shown["vectors"]["visual"] == {"imageFields": ["image"], "videoFields": ["video"], "depthFields": ["depth"],
                                          "weights": {"imageFields": [2.0], "videoFields": [1.0],
                                                      "depthFields": [1.0]}}
    assert shown["vectors"]["sensors"]["imuFields"] == ["imu"]  # the spelling Weaviate reads
    assert "IMUFields" not in shown["vectors"]["sensors"]
    assert shown["properties"]["year"] == "int" and shown["properties"]["tags"] == "text[]"
    assert shown["properties"]["place"] == "text" and shown["properties"]["imu"] == "blob"
    config = client.collections.get(collection_name).config.get()
    assert all(vc.vector_index_config.distance_metric.value == "cosine" for vc in config.vector_config.values())

    code, out, err = cli("collection", "create", collection_name)
    assert code == 2 and "already exists" in err
    code, out, err = cli("collection", "delete", collection_name)
    assert code == 0 and f"deleted collection {collection_name}" in out
    assert not client.collections.exists(collection_name)
    code, out, err = cli("collection", "delete", collection_name)
    assert code == 0 and "nothing deleted" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["collection", "create", "Bad", "--weights", "image=heavy"], "expected field=number pairs"),
    (["collection", "create", "Bad", "--named-vector", "visual"], "expected NAME=field,field"),
    (["collection", "create", "Bad", "--named-vector", "v=image,smell"], "'smell' is not a field"),
    (["collection", "create", "Bad", "--property", "image:text"], "property 'image' is built in"),
    (["collection", "create", "Bad", "--property", "n:float32"], "unknown type 'float32'"),
    (["collection", "create", "Bad", "--weights", "audio=1", "--named-vector", "v=image"], "which no vector uses"),
])
def test_invalid_collection_definitions_are_explained(argv, message, capsys):
    code = main([*argv, "--weaviate-url", "http://127.0.0.1:9"])  # rejected before connecting
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


def test_unreachable_services_are_explained_without_a_traceback(capsys, tmp_path: Path):
    code = main(["search", "--collection", "Anything", "--text", "hello", "--weaviate-url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: cannot connect to Weaviate at http://127.0.0.1:9: [Errno 111] Connection refused")
    assert "Details: ." not in err and "--weaviate-url" in err  # the reason, and where the address comes from
    code = main(["classify", "--labels", "a,b", "--text", "hello", "--server", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the vectorizer server at http://127.0.0.1:9" in err
    code = main(["ingest", str(tmp_path / "nowhere"), "--collection", "X"])
    err = capsys.readouterr().err
    assert code == 2 and "is not a folder" in err


@pytest.mark.weaviate
def test_missing_collection_is_explained(cli):
    code, _, err = cli("search", "--collection", "NoSuchCollection", "--text", "hello")
    assert code == 2 and "collection NoSuchCollection does not exist" in err


class _Files(http.server.BaseHTTPRequestHandler):
    payload = b""
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[tuple[str, type[_Files]]]:
    handler = type("Handler", (_Files,), {"payload": bytes(range(256)) * 4096, "requests": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/weights/imagebind_huge.pth", handler
    server.shutdown()
    server.server_close()


def test_download_fetches_into_the_cache_once_and_prints_path_and_sha256(file_server, tmp_path: Path, capsys):
    url, handler = file_server
    expected = hashlib.sha256(handler.payload).hexdigest()
    code = main(["download", "--url", url, "--cache-dir", str(tmp_path), "--sha256", expected])
    out = capsys.readouterr().out
    assert code == 0
    path = tmp_path / "imagebind_huge.pth"
    assert f"path: {path}" in out and f"sha256: {expected}" in out and f"size: {len(handler.payload)} bytes" in out
    assert path.read_bytes() == handler.payload
    code = main(["download", "--url", url, "--cache-dir", str(tmp_path)])
    assert code == 0 and handler.requests == 1  # cached: not downloaded again
    assert f"sha256: {expected}" in capsys.readouterr().out

    code = main(["download", "--url", url.replace("imagebind_huge", "other"), "--cache-dir", str(tmp_path),
                 "--sha256", "0" * 64])
    err = capsys.readouterr().err
    assert code == 2 and "checksum mismatch" in err and not (tmp_path / "other.pth").exists()
