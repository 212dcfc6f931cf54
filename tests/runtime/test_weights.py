"""Where the weights come from: downloading (resume, restart, checksum, atomic rename, planted links)
from a local HTTP server the tests start, the download cache, and explicit paths."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagebind_vectorizer.errors import CheckpointError
from imagebind_vectorizer.runtime.download import LOCK_NAME, download, folder_lock, read_sidecar, sidecar_path
from imagebind_vectorizer.runtime.weights import CheckpointSource, default_cache_dir, resolve_checkpoint
from imagebind_vectorizer.settings import Settings


# Downloading ------------------------------------------------------------------------------------
class _Server(http.server.ThreadingHTTPServer):
    payload: bytes
    honour_range: bool = True
    truncate_next: int = 0  # answer this many requests with half the body, then hang up
    fail_next_with: list[int]
    requests: list[dict[str, str | None]]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        if self.path != "/weights/imagebind_tiny.pth":
            self.send_error(404, "no such checkpoint")
            return
        if srv.fail_next_with:
            self.send_error(srv.fail_next_with.pop(0))
            return
        data, start = srv.payload, 0
        requested = self.headers.get("Range")
        if requested and srv.honour_range:
            start = int(requested.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.truncate_next:
            srv.truncate_next -= 1
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.payload = os.urandom(3 * 1024 * 1024 + 12345)
    srv.fail_next_with = []
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def url_of(srv: _Server, name: str = "imagebind_tiny.pth") -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/weights/{name}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".part", ".tmp")))


def test_download_writes_the_file_and_its_digest_sidecar(tmp_path: Path, server: _Server) -> None:
    source = CheckpointSource(url=url_of(server), cache_dir=tmp_path, sha256=sha(server.payload).upper())
    path = resolve_checkpoint(source, progress=False)
    assert path == tmp_path / "imagebind_tiny.pth"
    assert path.read_bytes() == server.payload
    assert sidecar_path(path).read_text().split() == [sha(server.payload), str(len(server.payload))]
    assert leftovers(tmp_path) == []
    assert server.requests == [{"path": "/weights/imagebind_tiny.pth", "range": None}]
    # Cached: a second resolve does not contact the server.
    assert resolve_checkpoint(source, progress=False) == path
    assert len(server.requests) == 1


def test_download_resumes_an_existing_part_file(tmp_path: Path, server: _Server) -> None:
    (tmp_path / "imagebind_tiny.pth.part").write_bytes(server.payload[:1_000_000])
    path = resolve_checkpoint(CheckpointSource(url=url_of(server), cache_dir=tmp_path,
                                               sha256=sha(server.payload)), progress=False)
    assert [r["range"] for r in server.requests] == ["bytes=1000000-"]
    assert path.read_bytes() == server.payload
    assert leftovers(tmp_path) == []


def test_download_restarts_from_zero_when_the_server_ignores_range(tmp_path: Path, server: _Server) -> None:
    server.honour_range = False
    # The partial file holds garbage: appending to it would corrupt the result.
    (tmp_path / "imagebind_tiny.pth.part").write_bytes(b"\xff" * 500_000)
    path = resolve_checkpoint(CheckpointSource(url=url_of(server), cache_dir=tmp_path,
                                               sha256=sha(server.payload)), progress=False)
    assert [r["range"] for r in server.requests] == ["bytes=500000-", None]
    assert path.read_bytes() == server.payload


def test_download_with_a_wrong_sha256_fails_and_leaves_nothing(tmp_path: Path, server: _Server) -> None:
    wrong = "0" * 64
    with pytest.raises(CheckpointError) as info:
        resolve_checkpoint(CheckpointSource(url=url_of(server), cache_dir=tmp_path, sha256=wrong), progress=False)
    assert sha(server.payload) in str(info.value) and wrong in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_truncated_response_is_resumed_on_retry(tmp_path: Path, server: _Server) -> None:
    dest = tmp_path / "imagebind_tiny.pth"
    server.truncate_next = 1
    with pytest.raises(CheckpointError, match="after 1 attempts"):
        download(url_of(server), dest, sha256=sha(server.payload), progress=False, attempts=1)
    part = tmp_path / "imagebind_tiny.pth.part"
    assert not dest.exists(), "an incomplete download must never appear under the final name"
    half = len(server.payload) // 2
    assert part.read_bytes() == server.payload[:half]

    server.truncate_next = 1  # and once more inside one call: the retry loop resumes by itself
    path = resolve_checkpoint(CheckpointSource(url=url_of(server), cache_dir=tmp_path,
                                               sha256=sha(server.payload)), progress=False)
    remaining = len(server.payload) - half
    assert [r["range"] for r in server.requests] == [None, f"bytes={half}-", f"bytes={half + remaining // 2}-"]
    assert path.read_bytes() == server.payload
    assert leftovers(tmp_path) == []


def test_server_errors_are_retried_but_404_is_not(tmp_path: Path, server: _Server) -> None:
    server.fail_next_with = [503]
    path = resolve_checkpoint(CheckpointSource(url=url_of(server), cache_dir=tmp_path / "a"), progress=False)
    assert path.read_bytes() == server.payload and len(server.requests) == 2

    server.requests.clear()
    with pytest.raises(CheckpointError, match="HTTP 404"):
        resolve_checkpoint(CheckpointSource(url=url_of(server, "missing.pth"), cache_dir=tmp_path / "b"),
                           progress=False)
    assert len(server.requests) == 1
    assert leftovers(tmp_path / "b") == [] and not (tmp_path / "b" / "missing.pth").exists()


def test_an_explicit_path_never_contacts_the_server(tmp_path: Path, server: _Server) -> None:
    local = tmp_path / "mine.pth"
    local.write_bytes(b"weights")
    assert resolve_checkpoint(CheckpointSource(path=local, url=url_of(server), cache_dir=tmp_path)) == local
    with pytest.raises(CheckpointError, match="never downloaded"):
        resolve_checkpoint(CheckpointSource(path=tmp_path / "absent.pth", url=url_of(server), cache_dir=tmp_path))
    assert server.requests == []


def test_a_cached_file_without_a_recorded_digest_is_verified(tmp_path: Path, server: _Server) -> None:
    cached = tmp_path / "imagebind_tiny.pth"
    cached.write_bytes(b"not the checkpoint")
    source = CheckpointSource(url=url_of(server), cache_dir=tmp_path, sha256=sha(server.payload))
    with pytest.raises(CheckpointError, match="delete it"):
        resolve_checkpoint(source, progress=False)
    cached.write_bytes(server.payload)
    sidecar_path(cached).unlink()
    assert resolve_checkpoint(source, progress=False) == cached
    assert sidecar_path(cached).read_text().split()[0] == sha(server.payload)
    assert server.requests == []


def test_imagebind_cache_decides_the_cache_directory(tmp_path: Path, server: _Server,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEBIND_CACHE", str(tmp_path / "from-env"))
    path = resolve_checkpoint(CheckpointSource.of(Settings.load(checkpoint_url=url_of(server))), progress=False)
    assert path == tmp_path / "from-env" / "imagebind_tiny.pth" and path.read_bytes() == server.payload
    assert CheckpointSource.of(Settings.load(env={"IMAGEBIND_CACHE": "~/somewhere"})).cached_path() == Path(
        "~/somewhere/imagebind_huge.pth").expanduser()

    monkeypatch.delenv("IMAGEBIND_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "imagebind-vectorizer"


# Downloading into a folder others can write to: planted links and escaping names ---------------
def test_a_planted_part_symlink_is_refused_and_its_target_untouched(tmp_path: Path, server: _Server) -> None:
    cache, outside = tmp_path / "cache", tmp_path / "outside.txt"
    cache.mkdir()
    outside.write_bytes(b"precious")
    (cache / "imagebind_tiny.pth.part").symlink_to(outside)
    with pytest.raises(CheckpointError, match="symbolic link"):
        resolve_checkpoint(CheckpointSource(url=url_of(server), cache_dir=cache), progress=False)
    assert outside.read_bytes() == b"precious"
    assert server.requests == []


def test_a_planted_hard_link_as_part_file_is_refused(tmp_path: Path, server: _Server) -> None:
    cache, outside = tmp_path / "cache", tmp_path / "outside.txt"
    cache.mkdir()
    outside.write_bytes(b"precious")
    os.link(outside, cache / "imagebind_tiny.pth.part")
    with pytest.raises(CheckpointError, match="single link"):
        resolve_checkpoint(CheckpointSource(url=url_of(server), cache_dir=cache), progress=False)
    assert outside.read_bytes() == b"precious"


def test_a_fifo_planted_as_the_download_lock_is_refused_without_hanging(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    os.mkfifo(cache / LOCK_NAME)
    with pytest.raises(CheckpointError, match="not a plain file"), folder_lock(cache):
        pass


def test_planted_temporary_and_final_name_symlinks_are_never_written_through(tmp_path: Path,
                                                                             server: _Server) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    targets = {name: tmp_path / f"outside-{i}" for i, name in enumerate(
        ("imagebind_tiny.pth.tmp", "imagebind_tiny.pth.sha256.tmp", "imagebind_tiny.pth.sha256"))}
    for name, target in targets.items():
        target.write_bytes(b"precious")
        (cache / name).symlink_to(target)
    dangling = tmp_path / "never-created"
    (cache / "imagebind_tiny.pth").symlink_to(dangling)  # the final name: replaced, not followed
    path = resolve_checkpoint(CheckpointSource(url=url_of(server), cache_dir=cache, sha256=sha(server.payload)),
                              progress=False)
    assert not path.is_symlink() and path.read_bytes() == server.payload
    assert not sidecar_path(path).is_symlink()
    assert sidecar_path(path).read_text().split()[0] == sha(server.payload)
    assert all(target.read_bytes() == b"precious" for target in targets.values())
    assert not dangling.exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        ["imagebind_tiny.pth", "imagebind_tiny.pth.sha256", "imagebind_tiny.pth.tmp", "imagebind_tiny.pth.sha256.tmp"])


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
@pytest.mark.parametrize("planted", ["checkpoint", "sidecar"])
def test_a_checkpoint_or_digest_planted_by_another_user_is_verified_again(tmp_path: Path, server: _Server,
                                                                           planted: str) -> None:
    """The sidecar saves re-reading gigabytes at each start, but in a folder others can write to,
    another user could rename a file of the same size over the checkpoint (and the recorded digest
    would vouch for it), or plant the digest itself: the pinned sha256 must still hold."""
    cache = tmp_path / "cache"
    cache.mkdir()
    source = CheckpointSource(url=url_of(server), cache_dir=cache, sha256=sha(server.payload))
    path = resolve_checkpoint(source, progress=False)
    assert read_sidecar(path) is not None
    other = os.urandom(len(server.payload))
    if planted == "checkpoint":
        swapped = cache / "swap"
        swapped.write_bytes(other)
        os.chown(swapped, 65534, 65534)
        swapped.replace(path)
    else:
        path.write_bytes(other)
        sidecar = sidecar_path(path)
        os.chown(sidecar, 65534, 65534)
    assert read_sidecar(path) is None
    with pytest.raises(CheckpointError, match="expected"):
        resolve_checkpoint(source, progress=False)


@pytest.mark.parametrize("tail", ["/.", "/..", "/%2e%2e", "/..%2fescape.pth", "/.hidden.pth", "/x.pth.part",
                                  "/a%00b.pth", "/sub/."])
def test_urls_whose_file_name_escapes_the_cache_are_refused(tmp_path: Path, server: _Server, tail: str) -> None:
    cache = tmp_path / "deep" / "cache"
    cache.mkdir(parents=True)
    url = f"http://127.0.0.1:{server.server_address[1]}/weights{tail}"
    with pytest.raises(CheckpointError, match="not a plain file name"):
        resolve_checkpoint(CheckpointSource(url=url, cache_dir=cache), progress=False)
    assert server.requests == []
    assert list(tmp_path.rglob("*")) == [tmp_path / "deep", cache]


def test_only_http_urls_are_downloaded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.pth"
    secret.write_bytes(b"not for copying")
    with pytest.raises(CheckpointError, match="only http and https"):
        download(secret.as_uri(), tmp_path / "cache" / "copy.pth", progress=False)
    assert not (tmp_path / "cache" / "copy.pth").exists()
