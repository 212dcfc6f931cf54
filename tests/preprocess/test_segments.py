"""Streaming window decoders for long audio and video (moment search).

The promise: a segment's model input is exactly what the same window, cut out as a file of its
own, gives through the ordinary preprocessing; damage costs only the windows it touches; memory
does not grow with the file's length."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import preprocess
from imagebind_vectorizer.preprocess.audio import waveform_to_clips
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions, Profile
from imagebind_vectorizer.preprocess.segments import SourceLimits, Window, WindowSpec, iter_segments
from tests import media
from tests.helpers import assert_tensors_match

PROFILES = [Profile.OFFICIAL, Profile.WEAVIATE_LEGACY]
REPO = Path(__file__).resolve().parents[2]


def options(profile: Profile = Profile.OFFICIAL) -> PreprocessOptions:
    return PreprocessOptions(profile=profile)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("segments")


@pytest.fixture(scope="module")
def stereo_wav(media_dir: Path) -> tuple[Path, np.ndarray]:
    samples = media.window_tone(23.0, 44100, 10.0, channels=2, seed=1)
    path = media_dir / "long.wav"
    path.write_bytes(media.wav_bytes(samples, 44100))
    return path, samples


@pytest.fixture(scope="module")
def video_with_sound(media_dir: Path) -> Path:
    """26 s at 12000/1001 fps (10 s windows fall between frames) with an AAC soundtrack."""
    path = media_dir / "long.mp4"
    path.write_bytes(media.window_video_bytes(26.0, Fraction(12000, 1001), 10.0, audio_rate=16000, seed=2))
    return path


# Where windows lie ------------------------------------------------------------------------------------
def test_windows_cover_the_file_and_drop_only_a_tiny_tail() -> None:
    assert WindowSpec().windows(25.0) == [Window(0, 0, 10), Window(1, 10, 20), Window(2, 20, 25.0)]
    assert WindowSpec(10, 2).windows(26.0) == [Window(0, 0, 10), Window(1, 8, 18), Window(2, 16, 26.0)]
    assert WindowSpec().windows(20.3) == [Window(0, 0, 10), Window(1, 10, 20)]  # a 0.3 s tail is dropped
    assert WindowSpec().windows(3.0) == [Window(0, 0, 3.0)]  # a short file is one short window
    assert WindowSpec(10, 5).windows(20.0)[-1] == Window(2, 10, 20.0)  # nothing after the end is reached


@pytest.mark.parametrize("seconds, overlap", [(1, 0), (601, 0), (10, -1), (10, 6), (float("nan"), 0), (10, "2")])
def test_window_settings_are_validated(seconds: float, overlap: float) -> None:
    with pytest.raises(ValueError, match="window"):
        WindowSpec(seconds, overlap)


def test_window_spec_parses_the_cli_spelling() -> None:
    assert WindowSpec.parse("10s") == WindowSpec(10, 0)
    assert WindowSpec.parse("20s,3s") == WindowSpec(20, 3)
    assert WindowSpec.parse("15, 5") == WindowSpec(15, 5)
    for bad in ("", "10s,", "ten", "10,2,1"):
        with pytest.raises(ValueError, match="segments"):
            WindowSpec.parse(bad)


# Parity with a window cut out as a file of its own ---------------------------------------------------
@pytest.mark.parametrize("profile, spec", [(Profile.OFFICIAL, WindowSpec(10, 0)),
                                           (Profile.WEAVIATE_LEGACY, WindowSpec(10, 0)),
                                           (Profile.OFFICIAL, WindowSpec(8, 3))], ids=["official", "legacy", "overlap"])
def test_audio_window_is_the_cut_file(stereo_wav: tuple[Path, np.ndarray], profile: Profile,
                                      spec: WindowSpec) -> None:
    path, samples = stereo_wav
    segments = list(iter_segments(path, InputKind.AUDIO, spec, options(profile)))
    assert [s.window for s in segments] == spec.windows(23.0)
    for segment in segments:
        assert not segment.errors
        first, stop = round(segment.window.start * 44100), round(segment.window.end * 44100)
        cut = media.wav_bytes(samples[:, first:stop], 44100)
        expected = preprocess(InputKind.AUDIO, cut, options(profile))
        assert_tensors_match(segment.rows[InputKind.AUDIO], expected, label="segment audio vs cut file",
                             what=f"window {segment.window}")


@pytest.mark.parametrize("profile", PROFILES)
def test_video_window_is_the_cut_file(video_with_sound: Path, profile: Profile) -> None:
    """At 12000/1001 fps a 10 s window holds 119.88 frames: window k holds the frames whose time
    is in [start, end), i.e. indices ceil(start * fps) .. ceil(end * fps) - 1, and the cut file
    holds exactly those frames, so the inputs agree exactly (not merely closely)."""
    data = video_with_sound.read_bytes()
    fps = Fraction(12000, 1001)
    segments = list(iter_segments(video_with_sound, InputKind.VIDEO, WindowSpec(), options(profile)))
    total = round(26.0 * fps)
    assert [s.window for s in segments] == WindowSpec().windows(total / float(fps))
    for segment in segments:
        assert not segment.errors
        first = math.ceil(Fraction(segment.window.start) * fps)
        stop = min(math.ceil(Fraction(segment.window.end) * fps), total)
        expected = preprocess(InputKind.VIDEO, media.lossless_video_cut(data, first, stop), options(profile))
        assert_tensors_match(segment.rows[InputKind.VIDEO], expected, label="segment video vs cut file",
                             what=f"window {segment.window}")


@pytest.mark.parametrize("profile", PROFILES)
def test_video_soundtrack_is_the_cut_audio(video_with_sound: Path, profile: Profile) -> None:
    decoded, rate = media.decoded_audio(str(video_with_sound))
    segments = list(iter_segments(video_with_sound, InputKind.VIDEO, WindowSpec(), options(profile)))
    for segment in segments:
        first, stop = round(segment.window.start * rate), round(segment.window.end * rate)
        expected = waveform_to_clips(torch.from_numpy(decoded[:, first:stop].copy()), rate,
                                     minus_one=profile is Profile.OFFICIAL)
        assert_tensors_match(segment.rows[InputKind.AUDIO], expected, label="segment soundtrack vs cut audio",
                             what=f"window {segment.window}")


def test_video_without_soundtrack_has_only_pictures(media_dir: Path) -> None:
    path = media_dir / "silent.mkv"
    path.write_bytes(media.window_video_bytes(21.0, 4, 10.0, container="matroska"))
    segments = list(iter_segments(path, InputKind.VIDEO, WindowSpec(), options()))
    assert [s.window.index for s in segments] == [0, 1, 2]
    assert all(set(s.rows) == {InputKind.VIDEO} and not s.errors for s in segments)


# Damage ------------------------------------------------------------------------------------------------
def _damaged(data: bytes, at: float, share: float) -> bytes:
    broken = bytearray(data)
    start, length = int(len(data) * at), int(len(data) * share)
    broken[start:start + length] = np.random.default_rng(5).integers(0, 256, length, dtype=np.uint8).tobytes()
    return bytes(broken)


@pytest.mark.parametrize("kind, fmt", [(InputKind.AUDIO, "ogg-opus"), (InputKind.AUDIO, "mka-flac"),
                                       (InputKind.VIDEO, "mkv")])
def test_a_corrupted_stretch_costs_only_its_windows(media_dir: Path, kind: InputKind, fmt: str) -> None:
    """Garbage over 5% of the file: the demuxer loses packets (a hole in the pts) or the codec
    refuses some. (Garbage a codec decodes without complaint -- PCM samples, or VP9 data it
    conceals -- is not detectable damage, and is not what this is about.)"""
    if kind is InputKind.AUDIO:
        container, codec, rate = {"ogg-opus": ("ogg", "libopus", 48000), "mka-flac": ("matroska", "flac", 16000)}[fmt]
        clean = media.encoded_audio(media.window_tone(40.0, rate, 10.0), rate, container, codec)
    else:
        container, codec = {"mkv": ("matroska", "libx264")}[fmt]
        clean = media.window_video_bytes(40.0, 4, 10.0, container=container, codec=codec)
    path = media_dir / f"damaged-{fmt}"
    path.write_bytes(_damaged(clean, 0.45, 0.05))
    segments = list(iter_segments(path, kind, WindowSpec(), options()))
    assert [s.window.index for s in segments] == [0, 1, 2, 3]
    bad = [s.window.index for s in segments if s.errors]
    assert bad and set(bad) <= {1, 2}, f"damage reported in windows {bad}"
    assert all("could not be decoded" in str(e) for s in segments for e in s.errors.values())
    assert kind in segments[0].rows and kind in segments[3].rows
    (clean_path := media_dir / f"clean-{fmt}").write_bytes(clean)
    reference = next(iter_segments(clean_path, kind, WindowSpec(), options()))
    assert torch.equal(segments[0].rows[kind], reference.rows[kind])


def test_truncated_audio_yields_the_windows_before_the_damage_then_an_error(
        stereo_wav: tuple[Path, np.ndarray], media_dir: Path) -> None:
    data = stereo_wav[0].read_bytes()
    path = media_dir / "truncated.wav"
    path.write_bytes(data[: len(data) * 19 // 23])  # 19 of 23 seconds
    seen = []
    with pytest.raises(InputError, match="truncated"):
        for segment in iter_segments(path, InputKind.AUDIO, WindowSpec(), options()):
            seen.append(segment.window)
    assert [w.index for w in seen] == [0, 1] and seen[-1].end == pytest.approx(19.0, abs=0.01)


def test_truncated_video_yields_the_windows_before_the_damage_then_an_error(media_dir: Path) -> None:
    data = media.window_video_bytes(40.0, 4, 10.0, container="matroska")
    path = media_dir / "truncated.mkv"
    path.write_bytes(data[: len(data) * 6 // 10])
    seen = []
    with pytest.raises(InputError, match="truncated"):
        for segment in iter_segments(path, InputKind.VIDEO, WindowSpec(), options()):
            seen.append(segment)
    assert [s.window.index for s in seen[:2]] == [0, 1] and not seen[0].errors and not seen[1].errors


# Bad input ---------------------------------------------------------------------------------------------
def _bad_inputs(media_dir: Path) -> dict[str, tuple[InputKind, bytes, str]]:
    header_only = media.wav_bytes(np.zeros((1, 0), dtype=np.float32), 16000)
    return {
        "empty": (InputKind.AUDIO, b"", "empty"),
        "not media": (InputKind.VIDEO, b"hello, this is not a video" * 100, "FFmpeg"),
        "no samples": (InputKind.AUDIO, header_only, "no samples"),
        "audio as video": (InputKind.VIDEO, media.wav_bytes(media.tone(3.0, 16000), 16000), "no video stream"),
        "video as audio": (InputKind.AUDIO, media.window_video_bytes(3.0, 4, 10.0), "no audio stream"),
    }


@pytest.mark.parametrize("case", ["empty", "not media", "no samples", "audio as video", "video as audio"])
def test_unusable_files_are_refused_with_a_reason(media_dir: Path, case: str) -> None:
    kind, data, reason = _bad_inputs(media_dir)[case]
    path = media_dir / f"bad-{case.replace(' ', '-')}"
    path.write_bytes(data)
    with pytest.raises(InputError, match=reason):
        list(iter_segments(path, kind, WindowSpec(), options()))


def test_files_over_the_duration_limit_are_refused_before_decoding(stereo_wav: tuple[Path, np.ndarray],
                                                                   video_with_sound: Path) -> None:
    limits = SourceLimits(max_seconds=20.0)
    for kind, path in ((InputKind.AUDIO, stereo_wav[0]), (InputKind.VIDEO, video_with_sound)):
        with pytest.raises(InputError, match="over the limit of 20 s") as caught:
            next(iter_segments(path, kind, WindowSpec(), options(), limits))
        assert caught.value.reason == "too_long"


def test_a_file_object_source_works_like_a_path(stereo_wav: tuple[Path, np.ndarray]) -> None:
    path = stereo_wav[0]
    from_path = list(iter_segments(path, InputKind.AUDIO, WindowSpec(), options()))
    from_file = list(iter_segments(io.BytesIO(path.read_bytes()), InputKind.AUDIO, WindowSpec(), options()))
    assert all(torch.equal(a.rows[InputKind.AUDIO], b.rows[InputKind.AUDIO]) for a, b in zip(from_path, from_file,
                                                                                            strict=True))


def test_eight_channel_audio_is_segmented_without_crashing(media_dir: Path) -> None:
    """PyAV's planar float path crashes the process at 8+ channels; the decoder reads packed."""
    path = media_dir / "eight.wav"
    path.write_bytes(media.wav_bytes(media.tone(12.0, 16000, channels=8), 16000))
    code = f"""
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions
from imagebind_vectorizer.preprocess.segments import WindowSpec, iter_segments
print(len(list(iter_segments({str(path)!r}, InputKind.AUDIO, WindowSpec(), PreprocessOptions()))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "2"


# Memory does not grow with the file's length --------------------------------------------------------------
_PEAKS = textwrap.dedent("""
    import json, os, sys
    from imagebind_vectorizer.kinds import InputKind
    from imagebind_vectorizer.preprocess.profiles import PreprocessOptions, Profile
    from imagebind_vectorizer.preprocess.segments import WindowSpec, iter_segments
    kind, profile, spec = InputKind(sys.argv[1]), Profile(sys.argv[2]), WindowSpec(float(sys.argv[3]))
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    def rss_kib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * page_kib
    for path in sys.argv[4:]:
        count, peak = 0, 0
        for _ in iter_segments(path, kind, spec, PreprocessOptions(profile=profile)):
            count, peak = count + 1, max(peak, rss_kib())
        print(json.dumps({"windows": count, "peak_kib": peak}))
""")


def _growth_mib(short: Path, long: Path, kind: InputKind, window_s: float,
                profile: Profile = Profile.OFFICIAL) -> tuple[float, int]:
    """How much more resident memory segmenting the long file held than the short one, in one
    fresh process (the resident size sampled at every window: ru_maxrss would be the high-water
    mark of one-off start-up work, which hides what the decoder keeps), and the long file's
    window count. Both files have several windows, so both see a window being prepared while
    the previous one is still held."""
    # A fixed mmap threshold makes glibc hand every large block back when it is freed, so the
    # resident size tracks what is alive; by default it raises the threshold after the first
    # large free and later windows' tensors land in a heap that keeps its high-water mark.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run([sys.executable, "-c", _PEAKS, kind.value, profile.value, str(window_s), str(short),
                           str(long)], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    small, big = (json.loads(line) for line in done.stdout.splitlines())
    return (big["peak_kib"] - small["peak_kib"]) / 1024, big["windows"]


def test_audio_memory_does_not_grow_with_length(media_dir: Path) -> None:
    """8 minutes of 16 kHz audio would be 31 MB as float32 samples; decoding it window by window
    must hold what a 2-minute file does (30-s windows: fewer windows to prepare, the same code)."""
    short, long = media_dir / "mem-short.wav", media_dir / "mem-long.wav"
    short.write_bytes(media.wav_bytes(media.window_tone(120.0, 16000, 10.0), 16000))
    long.write_bytes(media.wav_bytes(media.window_tone(480.0, 16000, 10.0), 16000))
    grown_mib, windows = _growth_mib(short, long, InputKind.AUDIO, 30.0)
    assert windows == 16
    assert grown_mib < 12, f"peak grew by {grown_mib:.1f} MiB from 2 to 8 minutes of audio"


@pytest.mark.parametrize("profile", PROFILES)
def test_video_memory_does_not_grow_with_length(media_dir: Path, profile: Profile) -> None:
    """3 minutes at 4 fps, 160x120 with sound: keeping every decoded frame would grow it by ~80 MiB."""
    short, long = media_dir / "mem-short.mp4", media_dir / "mem-long.mp4"
    if not long.exists():
        short.write_bytes(media.window_video_bytes(60.0, 4, 10.0, 160, 120, audio_rate=16000))
        long.write_bytes(media.window_video_bytes(180.0, 4, 10.0, 160, 120, audio_rate=16000))
    grown_mib, windows = _growth_mib(short, long, InputKind.VIDEO, 30.0, profile)
    assert windows == 6
    assert grown_mib < 12, f"peak grew by {grown_mib:.1f} MiB from 1 to 3 minutes of video"


def test_segment_inputs_pickle_whole_for_a_worker_process(stereo_wav: tuple[Path, np.ndarray]) -> None:
    """A long file may be decoded in a worker process and its windows sent back: every part of a
    window, errors included (reason and location), survives pickling."""
    import pickle

    segment = next(iter_segments(stereo_wav[0], InputKind.AUDIO, WindowSpec(), options()))
    segment.errors[InputKind.VIDEO] = InputError("broken stretch", reason="decode", field="video", index=3)
    back = pickle.loads(pickle.dumps(segment))
    assert back.window == segment.window and torch.equal(back.rows[InputKind.AUDIO], segment.rows[InputKind.AUDIO])
    error = back.errors[InputKind.VIDEO]
    assert (error.message, error.reason, error.field, error.index) == ("broken stretch", "decode", "video", 3)
