"""Media decoders run in worker processes: whatever an input does to FFmpeg or Pillow (crash, spin,
eat memory), its own request fails with a clear 400 / INVALID_ARGUMENT and the server goes on; a
decoder whose caller is gone, or whose server is stopping, is killed at once."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from imagebind_vectorizer.engine.decode_pool import DecodeLimits, DecodePool
from imagebind_vectorizer.engine.engine import Engine
from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import preprocess
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.helpers import isolated
from tests.server import faulty_decoder
from tests.server.support import (
    InProcessServer,
    LoopThread,
    ServeProcess,
    embedding_vector,
    go_request,
    grpc_stub,
    http_vectorize,
    item,
    start_serve,
    vectorize_body,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

ATOL = 1e-5
WAV = media.audio_bytes("wav", seconds=0.5)
PNG = media.image_bytes("PNG", 48, 48)


def many_channel_audio(fmt: str, channels: int) -> bytes:
    signal = media.tone(0.4, 16000, channels=channels, noise=0.1, seed=channels)
    if fmt == "wav":
        return media.wav_bytes(signal, 16000)
    return media.encoded_audio(signal, 16000, "wv", "wavpack", sample_format="s16p")


MANY_CHANNELS = [(fmt, channels) for channels in (8, 16, 32, 64) for fmt in ("wav", "wavpack")]


# The crash, end to end: a `serve` process, so that a regression fails these tests cleanly ------
@pytest.fixture(scope="module")
def serve(server_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    running = start_serve(server_settings, tmp_path_factory.mktemp("serve") / "serve.log")
    wait_until(lambda: go_request(running.http_port, "GET", "/.well-known/ready").status == 204, timeout=120)
    yield running
    running.kill()


def expected_audio_vectors(reference: Embedder, clips: list[bytes]) -> np.ndarray:
    """`reference.embed`, with the decoding in a process of its own: where the decoder crashes, this
    test fails instead of the whole session."""
    rows = [isolated(preprocess, InputKind.AUDIO, clip, reference.options) for clip in clips]
    per_clip = reference.forward_rows(InputKind.AUDIO, torch.cat(rows), 16)  # type: ignore[arg-type]
    return reference.finish(per_clip, [r.shape[0] for r in rows]).numpy()  # type: ignore[union-attr]


def test_audio_with_8_to_64_channels_over_http_and_grpc(serve: ServeProcess, reference: Embedder) -> None:
    """Issue 8, case 1: any audio with 8 or more channels killed the server with SIGSEGV."""
    clips = [many_channel_audio(fmt, channels) for fmt, channels in MANY_CHANNELS]
    response = http_vectorize(serve.http_port, vectorize_body(audio=clips))
    assert response.status == 200, response.body
    channel, stub = grpc_stub(f"127.0.0.1:{serve.grpc_port}")
    with channel:
        answer = stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.AUDIO, clip) for clip in clips]), timeout=60)
    assert serve.proc.poll() is None
    want = expected_audio_vectors(reference, clips)
    np.testing.assert_allclose(response.json()["audioVectors"], want, atol=ATOL)
    for embedding, expected in zip(answer.embeddings, want, strict=True):
        np.testing.assert_allclose(embedding_vector(embedding), expected, atol=ATOL)


# Faults in a decoder, over both transports -----------------------------------------------------------
@pytest.fixture(scope="module")
def faulty(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder) -> Iterator[InProcessServer]:
    """A server whose decoder workers run `faulty_decoder.preprocess`, with tight per-item limits."""
    limits = DecodeLimits(cpu_s=1, wall_s=30, memory_mb=512)

    def engine(settings: Settings) -> Engine:
        pool = DecodePool(2, limits, preprocess="tests.server.faulty_decoder:preprocess")
        return Engine(settings, embedder=shared_embedder, decode_pool=pool)

    running = InProcessServer(loop_thread, server_settings, engine)
    yield running
    running.stop()


def decode_pool(server: InProcessServer) -> DecodePool:
    return server.engine._decode_pool


def assert_still_serving(server: InProcessServer, reference: Embedder) -> None:
    response = http_vectorize(server.http_port, vectorize_body(["still fine"], images=[PNG], audio=[WAV]))
    assert response.status == 200, response.body
    np.testing.assert_allclose(response.json()["audioVectors"], reference.embed("audio", [WAV]), atol=ATOL)
    channel, stub = grpc_stub(server.grpc_target)
    with channel:
        answer = stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.IMAGE, PNG)]), timeout=30)
    np.testing.assert_allclose(embedding_vector(answer.embeddings[0]), reference.embed("image", [PNG])[0], atol=ATOL)


FAULTS = [
    ("crash", InputKind.AUDIO, many_channel_audio("wav", 8), "decoder_crashed", "decoder crashed on this input"),
    ("cpu", InputKind.IMAGE, faulty_decoder.SPIN, "too_complex", "more than 1 s of CPU time"),
    ("memory", InputKind.IMAGE, faulty_decoder.HOG, "too_large", "more than the 512 MiB"),
]


@pytest.mark.parametrize(("case", "kind", "data", "reason", "words"), FAULTS, ids=[f[0] for f in FAULTS])
def test_a_decoder_fault_fails_its_item_and_the_server_goes_on(faulty: InProcessServer, reference: Embedder,
                                                               case: str, kind: InputKind, data: bytes,
                                                               reason: str, words: str) -> None:
    field = {InputKind.AUDIO: "audio", InputKind.IMAGE: "images"}[kind]
    replaced = decode_pool(faulty).replaced
    response = http_vectorize(faulty.http_port, vectorize_body(**{field: [PNG if kind is InputKind.IMAGE else WAV,
                                                                         data]}))
    assert response.status == 400, response.body
    message = response.json()["error"]
    assert message.startswith(f"{field}[1]: ") and words in message, message
    assert_still_serving(faulty, reference)

    channel, stub = grpc_stub(faulty.grpc_target)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "fine"), item(kind, data)]), timeout=60)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "items[1]" in info.value.details() and words in info.value.details()
    trailing = dict(info.value.trailing_metadata() or ())
    assert trailing.get("reason", reason) == reason
    assert_still_serving(faulty, reference)
    # One worker lost per faulty item (and any still decoding a sibling item of the failed request:
    # that work has no caller left), each replaced on demand.
    assert decode_pool(faulty).replaced >= replaced + 2


def test_a_text_too_costly_to_tokenize_is_a_400_naming_it(server: InProcessServer) -> None:
    """Issue 8, case 4: a 20,000-letter word took ~60 s of BPE under a process-wide lock."""
    word = "".join(chr(97 + (i * 7919) % 26) for i in range(20_000))
    response = http_vectorize(server.http_port, vectorize_body(["fine", word]))
    assert response.status == 400, response.body
    assert response.json()["error"].startswith("texts[1]: text has a word of 20000 bytes")
    channel, stub = grpc_stub(server.grpc_target)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "fine"), item(InputKind.TEXT, word)]),
                       timeout=30)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "items[1]" in info.value.details()


def worker_pids(server: InProcessServer) -> set[int]:
    return {worker.process.pid for worker in decode_pool(server)._all}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_a_grpc_deadline_stops_the_decoder_working_on_it(faulty: InProcessServer) -> None:
    before = worker_pids(faulty)
    channel, stub = grpc_stub(faulty.grpc_target)
    started = time.monotonic()
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.IMAGE, faulty_decoder.SLEEP)]), timeout=1.5)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    sleeper = worker_pids(faulty) - before
    wait_until(lambda: not (worker_pids(faulty) & sleeper), timeout=10)
    for pid in sleeper:
        wait_until(lambda pid=pid: not alive(pid), timeout=10)
    assert time.monotonic() - started < 15  # not the 60 s the decoder would have slept


def test_a_cancelled_item_kills_its_worker_and_closing_kills_the_rest(loop_thread: LoopThread) -> None:
    async def scenario() -> tuple[set[int], set[int]]:
        pool = DecodePool(2, preprocess="tests.server.faulty_decoder:preprocess")
        from imagebind_vectorizer.preprocess import PreprocessOptions

        options = PreprocessOptions()
        await pool.preprocess(InputKind.IMAGE, PNG, options)  # one idle worker
        task = asyncio.ensure_future(pool.preprocess(InputKind.IMAGE, faulty_decoder.SLEEP, options))
        await asyncio.sleep(1.0)
        busy = {w.process.pid for w in pool._all}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        left = {w.process.pid for w in pool._all}
        pool.close()
        return busy, left

    busy, left = loop_thread.run(scenario())
    assert busy - left, "the cancelled item's worker is no longer in the pool"
    for pid in busy:
        wait_until(lambda pid=pid: not alive(pid), timeout=10)


def test_a_bad_item_keeps_its_worker(loop_thread: LoopThread) -> None:
    """Ordinary bad input is an answer, not a fault: the worker stays for the next item."""
    async def scenario() -> int:
        pool = DecodePool(1)
        from imagebind_vectorizer.preprocess import PreprocessOptions

        with pytest.raises(InputError):
            await pool.preprocess(InputKind.IMAGE, b"not an image at all", PreprocessOptions())
        await pool.preprocess(InputKind.IMAGE, PNG, PreprocessOptions())
        replaced = pool.replaced
        pool.close()
        return replaced

    assert loop_thread.run(scenario()) == 0


def test_workers_follow_the_workers_setting(tmp_path: Path, server_settings: Settings) -> None:
    engine = Engine(server_settings.replace(workers=3))
    try:
        assert decode_pool_size(engine) == 3
    finally:
        engine._decode_pool.close()


def decode_pool_size(engine: Engine) -> int:
    return engine._decode_pool.size


DEEP_TMPDIR_DECODE = """
import asyncio, sys, tempfile
from imagebind_vectorizer.engine.decode_pool import DecodePool
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions

async def main():
    pool = DecodePool(1)
    try:
        rows = await pool.preprocess(InputKind.IMAGE, sys.stdin.buffer.read(), PreprocessOptions())
    finally:
        pool.close()
    print(tuple(rows.shape), len(tempfile.gettempdir()))

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_decoders_start_under_a_temp_dir_too_deep_for_a_unix_socket(tmp_path: Path) -> None:
    """The forkserver's socket lives under the temp dir; under a deep $TMPDIR (a CI job's, a test's)
    Python 3.11 failed every decoder start with "AF_UNIX path too long". Decoding still works, and
    nothing is left in that temp dir."""
    import subprocess
    import sys

    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    done = subprocess.run([sys.executable, "-c", DEEP_TMPDIR_DECODE], input=media.image_bytes("PNG", 40, 32),
                          capture_output=True, timeout=120, env={**os.environ, "TMPDIR": str(deep)})
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    shape, temp_len = done.stdout.decode().split(") ")
    assert shape == "(1, 3, 224, 224" and int(temp_len) > 107
    assert list(deep.iterdir()) == []


def test_a_dead_workers_files_are_closed_once() -> None:
    """A worker that dies mid-item is reaped where its death is seen and again when the pool retires
    it. The second close of its exchange file's number closed whatever the server had opened under
    that number since — a client's socket: under load its connection was cut, and the next client
    on that number got the first one's answer. Closing is idempotent now."""
    from imagebind_vectorizer.engine.decode_pool import _Exchange

    exchange = _Exchange(os.memfd_create("exchange-test"))
    exchange.write(b"item")
    number = exchange.fd
    exchange.close()
    read_end, write_end = os.pipe()  # the lowest free numbers: the exchange file's among them
    try:
        assert number in (read_end, write_end)
        exchange.close()  # reaped again
        os.fstat(read_end)
        os.fstat(write_end)  # both still open
    finally:
        os.close(read_end)
        os.close(write_end)
