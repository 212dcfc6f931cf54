"""VectorizeSegments: long files streamed up in chunks, segments streamed back as computed.

The central promise: a segment's vector is the vector `/vectorize` gives for the same window cut
out as a file of its own (audio, video pictures, video soundtrack; both profiles)."""

from __future__ import annotations

import errno
import math
import os
import shutil
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import grpc
import numpy as np
import pytest

from imagebind_vectorizer.client.segments import SegmentClient
from imagebind_vectorizer.errors import InputError, OverloadedError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess.segments import WindowSpec
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.settings import Settings
from tests import media
from tests.helpers import assert_vectors_match
from tests.server.support import (
    InProcessServer,
    LoopThread,
    grpc_stub,
    http_vectorize,
    start_server,
    vectorize_body,
    wait_until,
)

SPEC = WindowSpec(10.0)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("segment-rpc")
    paths = {"audio": folder / "long.wav", "video": folder / "long.mp4", "damaged": folder / "damaged.ogg",
             "notmedia": folder / "notes.txt", "empty": folder / "empty.wav"}
    paths["audio"].write_bytes(media.wav_bytes(media.window_tone(23.0, 44100, 10.0, channels=2, seed=3), 44100))
    paths["video"].write_bytes(media.window_video_bytes(21.0, 4, 10.0, audio_rate=16000, seed=4))
    clean = media.encoded_audio(media.window_tone(40.0, 48000, 10.0, seed=5), 48000, "ogg", "libopus")
    broken = bytearray(clean)
    start, length = int(len(clean) * 0.45), len(clean) // 20
    broken[start:start + length] = np.random.default_rng(5).integers(0, 256, length, dtype=np.uint8).tobytes()
    paths["damaged"].write_bytes(bytes(broken))
    paths["notmedia"].write_bytes(b"just some words, not a recording\n" * 50)
    paths["empty"].write_bytes(b"")
    return paths


@pytest.fixture(scope="module")
def legacy_server(loop_thread: LoopThread, server_settings: Settings, make_embedder) -> Iterator[InProcessServer]:
    settings = server_settings.replace(preprocessing="weaviate-legacy")
    running = start_server(loop_thread, settings, make_embedder(preprocessing="weaviate-legacy", workers=2))
    yield running
    running.stop()


def _servers(request: pytest.FixtureRequest, profile: str) -> InProcessServer:
    return request.getfixturevalue("server" if profile == "official" else "legacy_server")


def _cut_vectors(port: int, kind: InputKind, data: bytes) -> np.ndarray:
    field = {InputKind.AUDIO: "audio", InputKind.VIDEO: "video"}[kind]
    response = http_vectorize(port, vectorize_body(**{field: [data]}))
    assert response.status == 200, response.body
    return np.asarray(response.json()[f"{field}Vectors"][0], dtype=np.float32)


#: a segment's vector against the same window cut and sent alone: largest element difference per
#: vector norm, and norm ratio. Measured at most 9e-8 (the same tensors through differently batched
#: forwards); 1e-5 as for every model comparison. A cosine of 0.999, the bound before, let one of a
#: video's 15 views go missing (cosine 0.9996 on the test model, element difference 1e-2).
SEGMENT_RTOL = 1e-5


def _assert_same(segment_vector: np.ndarray, standalone: np.ndarray, label: str) -> None:
    assert_vectors_match(segment_vector[None], standalone[None], label=label, rtol=SEGMENT_RTOL)


@pytest.mark.parametrize("profile", ["official", "weaviate-legacy"])
def test_audio_segment_vectors_equal_the_cut_windows_through_vectorize(request: pytest.FixtureRequest,
                                                                       files: dict[str, Path], profile: str) -> None:
    running = _servers(request, profile)
    with SegmentClient(running.grpc_target) as client:
        segments = list(client.segments(files["audio"], InputKind.AUDIO, SPEC))
    assert [(s.start, s.end) for s in segments] == [(0, 10), (10, 20), (20, 23.0)]
    samples = media.window_tone(23.0, 44100, 10.0, channels=2, seed=3)
    for segment in segments:
        cut = media.wav_bytes(samples[:, round(segment.start * 44100):round(segment.end * 44100)], 44100)
        _assert_same(segment.vectors[InputKind.AUDIO], _cut_vectors(running.http_port, InputKind.AUDIO, cut),
                     f"segment audio vs /vectorize ({profile})")


@pytest.mark.parametrize("profile", ["official", "weaviate-legacy"])
def test_video_segment_vectors_equal_the_cut_windows_through_vectorize(request: pytest.FixtureRequest,
                                                                       files: dict[str, Path], profile: str) -> None:
    running = _servers(request, profile)
    with SegmentClient(running.grpc_target) as client:
        segments = list(client.segments(files["video"], InputKind.VIDEO, SPEC))
    assert [s.index for s in segments] == [0, 1, 2]
    data = files["video"].read_bytes()
    sound, rate = media.decoded_audio(data)
    fps = Fraction(4)
    for segment in segments:
        first = math.ceil(Fraction(segment.start) * fps)
        stop = min(math.ceil(Fraction(segment.end) * fps), 84)
        pictures = media.lossless_video_cut(data, first, stop)
        _assert_same(segment.vectors[InputKind.VIDEO], _cut_vectors(running.http_port, InputKind.VIDEO, pictures),
                     f"segment pictures vs /vectorize ({profile})")
        heard = media.float_wav_bytes(sound[:, round(segment.start * rate):round(segment.end * rate)], rate)
        _assert_same(segment.vectors[InputKind.AUDIO], _cut_vectors(running.http_port, InputKind.AUDIO, heard),
                     f"segment soundtrack vs /vectorize ({profile})")


def test_the_rpc_gives_what_the_python_api_gives(server: InProcessServer, shared_embedder: Embedder,
                                                 files: dict[str, Path]) -> None:
    with SegmentClient(server.grpc_target) as client:
        remote = list(client.segments(files["video"], InputKind.VIDEO, WindowSpec(8.0, 2.0), first_index=1))
    local = list(shared_embedder.embed_segments(files["video"], InputKind.VIDEO, WindowSpec(8.0, 2.0)))
    assert [s.window for s in remote] == [s.window for s in local][1:]
    for a, b in zip(remote, local[1:], strict=True):
        for kind in (InputKind.VIDEO, InputKind.AUDIO):
            _assert_same(a.vectors[kind], b.vectors[kind], "segment rpc vs python api")


def test_a_damaged_stretch_is_reported_per_segment_and_the_rest_continues(server: InProcessServer,
                                                                          files: dict[str, Path]) -> None:
    with SegmentClient(server.grpc_target) as client:
        segments = list(client.segments(files["damaged"], InputKind.AUDIO, SPEC))
    assert [s.index for s in segments] == [0, 1, 2, 3]
    failed = [s for s in segments if s.errors]
    assert failed and all(InputKind.AUDIO not in s.vectors for s in failed)
    assert all("could not be decoded" in str(s.errors[InputKind.AUDIO]) and f"segment {s.index}" in
               str(s.errors[InputKind.AUDIO]) for s in failed)
    assert InputKind.AUDIO in segments[0].vectors and InputKind.AUDIO in segments[3].vectors


def _raw_stream(target: str, options: pb.SegmentOptions, chunks: list[bytes],
                timeout: float = 60) -> tuple[list[pb.VectorizeSegmentsResponse], grpc.RpcError | None]:
    channel, stub = grpc_stub(target)

    def requests() -> Iterator[pb.VectorizeSegmentsRequest]:
        for i, chunk in enumerate(chunks):
            request = pb.VectorizeSegmentsRequest(chunk=chunk)
            if i == 0:
                request.options.CopyFrom(options)
            yield request

    responses: list[pb.VectorizeSegmentsResponse] = []
    try:
        for response in stub.VectorizeSegments(requests(), timeout=timeout):
            responses.append(response)
        return responses, None
    except grpc.RpcError as exc:
        return responses, exc
    finally:
        channel.close()


def test_a_stream_that_stops_short_yields_the_segments_before_then_an_error(server: InProcessServer,
                                                                            files: dict[str, Path]) -> None:
    data = files["audio"].read_bytes()
    part = data[: len(data) * 15 // 23]  # 15 of 23 seconds arrive
    options = pb.SegmentOptions(modality=pb.MODALITY_AUDIO, total_bytes=len(data), id="lecture.wav")
    responses, error = _raw_stream(server.grpc_target, options, [part[i:i + 65536] for i in range(0, len(part),
                                                                                                    65536)])
    assert [r.segment.index for r in responses] == [0, 1]
    assert responses[0].segment.id == "lecture.wav" and responses[0].segment.HasField("audio")
    assert error is not None and error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"stopped after {len(part)} of the {len(data)} bytes" in error.details()


def test_a_complete_stream_ends_with_a_summary(server: InProcessServer, files: dict[str, Path]) -> None:
    data = files["audio"].read_bytes()
    options = pb.SegmentOptions(modality=pb.MODALITY_AUDIO, total_bytes=len(data), first_index=2)
    responses, error = _raw_stream(server.grpc_target, options, [data])
    assert error is None
    assert [r.WhichOneof("result") for r in responses] == ["segment", "done"]
    assert responses[-1].done.segments == 1 and responses[-1].done.bytes == len(data)
    assert responses[-1].done.seconds == pytest.approx(23.0)


@pytest.mark.parametrize("case", ["not media", "empty", "no options", "wrong kind", "window", "too large announced",
                                  "more than announced"])
def test_bad_streams_get_a_clear_invalid_argument(server: InProcessServer, files: dict[str, Path], case: str) -> None:
    audio = files["audio"].read_bytes()[:200_000]
    options, chunks, expected = {
        "not media": (pb.SegmentOptions(modality=pb.MODALITY_VIDEO), [files["notmedia"].read_bytes()], "FFmpeg"),
        "empty": (pb.SegmentOptions(modality=pb.MODALITY_AUDIO), [b""], "no bytes"),
        "no options": (None, [audio], "SegmentOptions"),
        "wrong kind": (pb.SegmentOptions(modality=pb.MODALITY_IMAGE), [audio], "MODALITY_AUDIO or MODALITY_VIDEO"),
        "window": (pb.SegmentOptions(modality=pb.MODALITY_AUDIO, window_seconds=0.5), [audio], "window length"),
        "too large announced": (pb.SegmentOptions(modality=pb.MODALITY_AUDIO, total_bytes=5 << 30), [audio],
                                "over the limit"),
        "more than announced": (pb.SegmentOptions(modality=pb.MODALITY_AUDIO, total_bytes=1000), [audio],
                                "more than announced 1000 bytes"),
    }[case]
    channel, stub = grpc_stub(server.grpc_target)
    try:
        def requests() -> Iterator[pb.VectorizeSegmentsRequest]:
            for i, chunk in enumerate(chunks):
                request = pb.VectorizeSegmentsRequest(chunk=chunk)
                if i == 0 and options is not None:
                    request.options.CopyFrom(options)
                yield request

        with pytest.raises(grpc.RpcError) as caught:
            list(stub.VectorizeSegments(requests(), timeout=60))
    finally:
        channel.close()
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert expected in caught.value.details()


def test_files_over_the_duration_limit_are_refused(loop_thread: LoopThread, server_settings: Settings,
                                                   shared_embedder: Embedder, files: dict[str, Path]) -> None:
    running = start_server(loop_thread, server_settings.replace(max_segment_source_seconds=15.0), shared_embedder)
    try:
        with SegmentClient(running.grpc_target) as client, pytest.raises(InputError, match="limit of 15 s"):
            list(client.segments(files["video"], InputKind.VIDEO))
    finally:
        running.stop()


def test_cancelling_frees_the_work_and_extra_streams_are_refused(loop_thread: LoopThread, server_settings: Settings,
                                                                 shared_embedder: Embedder, tmp_path: Path) -> None:
    """One stream place: a second stream is refused while the first runs; cancelling the first
    after one segment stops its decoder and empties the engine's queue within seconds."""
    long = tmp_path / "long.wav"
    long.write_bytes(media.wav_bytes(media.window_tone(600.0, 16000, 10.0), 16000))
    running = start_server(loop_thread, server_settings.replace(max_segment_streams=1), shared_embedder)
    try:
        segmenter = running.server.segmenter
        client = SegmentClient(running.grpc_target)
        stream = client.segments(long, InputKind.AUDIO)
        first = next(stream)
        assert first.index == 0 and segmenter.active == 1
        [worker] = segmenter.workers
        assert worker.process.is_alive()  # the file is decoded in a worker process
        with SegmentClient(running.grpc_target) as second, pytest.raises(OverloadedError, match="segment streams"):
            next(second.segments(long, InputKind.AUDIO))
        stream.close()  # cancels the call
        client.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (segmenter.active or running.engine.scheduler.held_rows(InputKind.AUDIO)
                                               or _segment_threads()):
            time.sleep(0.05)
        assert segmenter.active == 0
        assert running.engine.scheduler.held_rows(InputKind.AUDIO) == 0
        assert not _segment_threads(), "the decoder thread is still running"
        assert not segmenter.workers, "the decoder process is still registered"
    finally:
        running.stop()


def _segment_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("segments") and _busy(t)]


def _busy(thread: threading.Thread) -> bool:
    """A pool thread is alive but idle once its work item returned; look at what it runs."""
    import sys
    import traceback

    frame = sys._current_frames().get(thread.ident or -1)
    return frame is not None and any("iter_segments" in line or "decode" in line.split(",")[-1]
                                     for line in traceback.format_stack(frame))


# The spool: where an upload waits while it is segmented ------------------------------------------------
def _open_in(folder: Path) -> list[str]:
    """The files this process (and so an in-process server) has open in `folder`."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{folder}/"):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc")
def test_the_spool_has_no_name_holds_room_and_a_stalled_upload_lets_go(
        loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder, files: dict[str, Path],
        tmp_path: Path) -> None:
    """The upload is spooled in segment_spool_dir to a file without a name (a crash leaves nothing to
    clean up), only when the folder has room for what is announced; an upload that stops sending
    gives back its stream place and its spool (stream_idle_timeout_s)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    running = start_server(loop_thread, server_settings.replace(
        segment_spool_dir=str(spool), stream_idle_timeout_s=3.0, max_segment_source_bytes=1 << 62), shared_embedder)
    data = files["audio"].read_bytes()
    try:
        too_big = shutil.disk_usage(spool).free + (1 << 30)
        responses, error = _raw_stream(running.grpc_target, pb.SegmentOptions(
            modality=pb.MODALITY_AUDIO, total_bytes=too_big), [data[:1000]])
        assert error is not None and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
        assert "spool folder has room" in error.details() and not responses

        release = threading.Event()

        def stalled() -> Iterator[pb.VectorizeSegmentsRequest]:
            yield pb.VectorizeSegmentsRequest(options=pb.SegmentOptions(modality=pb.MODALITY_AUDIO,
                                                                        total_bytes=len(data)), chunk=data[:65536])
            release.wait(60)

        channel, stub = grpc_stub(running.grpc_target)
        try:
            began = time.monotonic()
            call = stub.VectorizeSegments(stalled(), timeout=60)
            wait_until(lambda: bool(_open_in(spool)), timeout=10)
            assert os.listdir(spool) == [], "the spooled upload has a name in the folder"
            with pytest.raises(grpc.RpcError) as caught:
                list(call)
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert "no message for 3 s" in caught.value.details() and time.monotonic() - began < 40
        finally:
            release.set()
            channel.close()
        segmenter = running.server.segmenter
        wait_until(lambda: segmenter.active == 0 and not _open_in(spool), timeout=10)
        assert segmenter.spool_reserved == 0
        with SegmentClient(running.grpc_target) as client:  # the place is free again
            assert [s.index for s in client.segments(files["audio"], InputKind.AUDIO)] == [0, 1, 2]
    finally:
        running.stop()


def test_a_full_spool_folder_is_resource_exhausted(loop_thread: LoopThread, server_settings: Settings,
                                                   shared_embedder: Embedder, files: dict[str, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk filling up while an upload is spooled is the server's state, not the caller's input:
    RESOURCE_EXHAUSTED with a reason, not INTERNAL with an OSError."""
    import tempfile

    from imagebind_vectorizer.engine import segments

    class FullDisk:
        def __init__(self, file: object) -> None:
            self._file, self._written = file, 0

        def write(self, data: bytes) -> int:
            self._written += len(data)
            if self._written > 100_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._file.write(data)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self._file, name)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self._file.close()  # type: ignore[attr-defined]

    real = tempfile.TemporaryFile
    monkeypatch.setattr(segments.tempfile, "TemporaryFile", lambda **kw: FullDisk(real(**kw)))
    data = files["audio"].read_bytes()
    running = start_server(loop_thread, server_settings, shared_embedder)
    try:
        responses, error = _raw_stream(running.grpc_target, pb.SegmentOptions(
            modality=pb.MODALITY_AUDIO, total_bytes=len(data)), [data[i:i + 65536] for i in range(0, len(data), 65536)])
        assert error is not None and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, error
        assert "spool folder is full" in error.details() and not responses
        assert running.server.segmenter.spool_reserved == 0
    finally:
        running.stop()
