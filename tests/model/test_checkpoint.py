"""Checkpoints: loading (official key names, mmap, no random init, clear errors) and downloading
(resume, restart, checksum, atomic rename) from a local HTTP server the tests start."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.errors import CheckpointError
from imagebind_vectorizer.modality import ENCODERS
from imagebind_vectorizer.model.checkpoint import (
    CheckpointSource,
    default_cache_dir,
    load_model,
    resolve_checkpoint,
    save_official_checkpoint,
)
from imagebind_vectorizer.model.download import download, sidecar_path
from imagebind_vectorizer.model.imagebind import random_model
from imagebind_vectorizer.settings import Settings
from tests.helpers import assert_vectors_match, reference_embed


def sample_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(2, 77, dtype=torch.long)
    ids[:, 0] = 49406
    ids[:, 1:8] = torch.randint(1, 49406, (2, 7), generator=g)
    ids[0, 8] = ids[1, 5] = 49407
    return {
        "vision": torch.randn(2, 3, 224, 224, generator=g),
        "text": ids,
        "audio": torch.randn(2, 1, 128, 204, generator=g),
        "depth": torch.randn(2, 1, 224, 224, generator=g),
        "thermal": torch.randn(2, 1, 224, 224, generator=g),
        "imu": torch.randn(2, 6, 2000, generator=g),
    }


@pytest.fixture(scope="module")
def official_state(tiny_checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)


# Loading ----------------------------------------------------------------------------------------
def test_round_trip_through_the_official_format_is_exact(tmp_path: Path, tiny_config) -> None:
    original = random_model(tiny_config, ENCODERS, seed=3)
    path = tmp_path / "round_trip.pth"
    save_official_checkpoint(original, path)
    assert all(k.startswith("modality_") for k in torch.load(path, weights_only=True))
    loaded = load_model(path, tiny_config)
    with torch.no_grad():
        for modality, x in sample_inputs().items():
            assert torch.equal(loaded(modality, x), original(modality, x)), modality


@pytest.mark.reference
def test_a_checkpoint_saved_by_the_reference_model_loads(tmp_path: Path, ref, tiny_config) -> None:
    torch.manual_seed(21)
    reference = ref.model.ImageBindModel(**tiny_config.official_kwargs()).eval()
    path = tmp_path / "from_reference.pth"
    torch.save(reference.state_dict(), path)
    ours = load_model(path, tiny_config)
    with torch.no_grad():
        for modality, x in sample_inputs(1).items():
            assert_vectors_match(ours(modality, x), reference_embed(reference, modality, x),
                                 label="checkpoint from reference", rtol=1e-5, what=modality)


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == str(path.resolve()):
                low, high = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((low, high))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc to see memory maps")
def test_loading_memory_maps_the_file_and_never_initialises_weights(tmp_path: Path, tiny_config,
                                                                    tiny_checkpoint: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    touched: list[str] = []

    def recorder(original):  # type: ignore[no-untyped-def]
        def wrapped(tensor, *args, **kwargs):  # type: ignore[no-untyped-def]
            touched.append(str(tensor.device))
            return original(tensor, *args, **kwargs)
        return wrapped

    for name in ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_", "xavier_uniform_", "zeros_",
                 "ones_", "constant_"):
        monkeypatch.setattr(torch.nn.init, name, recorder(getattr(torch.nn.init, name)))
    for name in ("normal_", "uniform_"):
        monkeypatch.setattr(torch.Tensor, name, recorder(getattr(torch.Tensor, name)))

    path = tmp_path / "mapped.pth"
    path.write_bytes(tiny_checkpoint.read_bytes())
    model = load_model(path, tiny_config)
    # Module constructors run their init on meta tensors (free); nothing real may be initialised.
    assert touched and set(touched) == {"meta"}, f"random init ran on {sorted(set(touched) - {'meta'})}"
    assert not any(p.is_meta for p in model.parameters())

    ranges = _mapped_ranges(path)
    assert ranges, "the checkpoint file is not memory-mapped"
    weight = model.encoders["text"].stem.token_embedding.weight
    assert any(low <= weight.data_ptr() < high for low, high in ranges), (
        "float32 CPU weights should be the mapped file's pages, not a copy")


def test_missing_and_unexpected_keys_are_named(tmp_path: Path, tiny_config, official_state) -> None:
    state = dict(official_state)
    del state["modality_heads.vision.2.weight"]
    del state["modality_trunks.audio.blocks.1.attn.bias_k"]
    state["modality_trunks.vision.blocks.9.norm_1.weight"] = torch.zeros(32)
    state["optimizer.step"] = torch.zeros(())
    path = tmp_path / "keys.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, tiny_config)
    message = str(info.value)
    for key in ("modality_heads.vision.2.weight", "modality_trunks.audio.blocks.1.attn.bias_k",
                "modality_trunks.vision.blocks.9.norm_1.weight", "optimizer.step"):
        assert key in message, message
    assert "missing 2" in message and "unexpected 2" in message, message


def test_shape_mismatch_names_the_key_and_both_shapes(tiny_config, tiny_checkpoint: Path) -> None:
    from imagebind_vectorizer.model.config import config_from_dict
    from tests.conftest import TINY_ARCHITECTURE

    wrong = config_from_dict({**TINY_ARCHITECTURE, "text_embed_dim": 64})
    with pytest.raises(CheckpointError) as info:
        load_model(tiny_checkpoint, wrong, ("text",))
    message = str(info.value)
    assert "modality_preprocessors.text.pos_embed: checkpoint (1, 77, 32), model (1, 77, 64)" in message, message


def test_keys_of_disabled_modalities_are_ignored(tmp_path: Path, tiny_config, official_state) -> None:
    # Only text and vision present, and a broken audio tensor: fine when audio is not loaded.
    state = {k: v for k, v in official_state.items() if k.split(".")[1] in ("text", "vision")}
    state["modality_trunks.audio.blocks.0.attn.bias_k"] = torch.zeros(7)
    path = tmp_path / "text_vision.pth"
    torch.save(state, path)
    model = load_model(path, tiny_config, ("vision", "text"))
    assert model.enabled == ("vision", "text")
    with pytest.raises(CheckpointError, match=r"modality_heads\.audio\.2\.weight"):
        load_model(path, tiny_config, ("text", "audio"))


def test_wrapped_and_legacy_format_checkpoints_load(tmp_path: Path, tiny_config, official_state,
                                                    tiny_model) -> None:
    x = sample_inputs(2)["depth"]
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": official_state}, wrapped)
    legacy = tmp_path / "legacy.pth"
    torch.save(official_state, legacy, _use_new_zipfile_serialization=False)  # cannot be mmapped
    with torch.no_grad():
        for path in (wrapped, legacy):
            assert torch.equal(load_model(path, tiny_config, ("depth",))("depth", x), tiny_model("depth", x))


class _Payload:
    """Unpickling this would run a command that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["text", "empty", "random-bytes", "truncated-zip", "not-a-dict",
                                  "dict-of-numbers", "plain-pickle", "code-execution"])
def test_files_that_are_not_checkpoints_give_a_clear_error(tmp_path: Path, tiny_config, tiny_checkpoint: Path,
                                                           kind: str) -> None:
    import pickle

    path = tmp_path / f"{kind}.pth"
    marker = tmp_path / "pwned"
    if kind == "text":
        path.write_text("this is a README, not weights\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random-bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "truncated-zip":
        data = tiny_checkpoint.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not-a-dict":
        torch.save([torch.zeros(2)], path)
    elif kind == "dict-of-numbers":
        torch.save({"modality_heads.vision.0.weight": 1.5}, path)
    elif kind == "plain-pickle":
        path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    else:
        torch.save({"modality_heads.vision.0.weight": _Payload(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, tiny_config)
    message = str(info.value)
    assert str(path) in message and len(message) < 600, message
    assert "not a loadable PyTorch checkpoint" in message or "state dict of tensors" in message or (
        "pickled Python objects" in message), message
    if kind == "code-execution":
        assert "system" in message, message  # names what was refused
    assert not marker.exists(), "loading a checkpoint ran code from the pickle"


def test_missing_checkpoint_file_is_a_clear_error(tmp_path: Path, tiny_config) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pth", tiny_config)


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
    assert default_cache_dir() == tmp_path / "from-env"
    path = resolve_checkpoint(CheckpointSource(url=url_of(server)), progress=False)
    assert path == tmp_path / "from-env" / "imagebind_tiny.pth" and path.read_bytes() == server.payload
    assert Settings.load(env={"IMAGEBIND_CACHE": "/somewhere"}).checkpoint_source().cached_path() == Path(
        "/somewhere/imagebind_huge.pth")

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
