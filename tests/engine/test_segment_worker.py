"""A long file's windows decoded in a worker process: the same windows as in process, and a worker
that crashes mid-file ends the file with an error after the windows it delivered."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.engine.decode_pool import DecodeLimits
from imagebind_vectorizer.engine.segment_worker import SegmentWorker
from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions
from imagebind_vectorizer.preprocess.segments import SourceLimits, WindowSpec, iter_segments
from tests import media


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("worker") / "long.wav"
    path.write_bytes(media.wav_bytes(media.window_tone(45.0, 16000, 10.0, seed=8), 16000))
    return path


def _worker(path: Path, **limits: float) -> SegmentWorker:
    return SegmentWorker(str(path), InputKind.AUDIO, WindowSpec(), PreprocessOptions(), SourceLimits(),
                         DecodeLimits(**limits))


def test_the_worker_delivers_exactly_the_in_process_windows(long_audio: Path) -> None:
    remote = list(_worker(long_audio).windows())
    local = list(iter_segments(long_audio, InputKind.AUDIO, WindowSpec(), PreprocessOptions()))
    assert [s.window for s in remote] == [s.window for s in local]
    assert all(torch.equal(a.rows[InputKind.AUDIO], b.rows[InputKind.AUDIO]) for a, b in zip(remote, local,
                                                                                            strict=True))


def test_a_worker_that_crashes_mid_file_ends_it_with_an_error_after_its_windows(long_audio: Path) -> None:
    worker = _worker(long_audio)
    windows = worker.windows()
    first = next(windows)
    assert first.window.index == 0
    os.kill(worker.process.pid, signal.SIGSEGV)
    with pytest.raises(InputError, match=r"crashed after 1 window\(s\) \(signal SIGSEGV\)") as caught:
        list(windows)
    assert caught.value.reason == "decoder_crashed"


def test_a_bad_file_is_an_input_error_from_the_worker(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_bytes(b"not audio at all" * 100)
    with pytest.raises(InputError, match="FFmpeg"):
        list(_worker(path).windows())


def test_killing_the_worker_ends_the_windows_quietly(long_audio: Path) -> None:
    worker = _worker(long_audio)
    windows = worker.windows()
    next(windows)
    worker.kill()
    assert list(windows) == []
