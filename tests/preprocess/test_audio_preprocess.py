"""Audio against the official `load_and_transform_audio_data`: the official profile under the
pinned pytorchvideo's clip spacing, the legacy profile under pytorchvideo 0.1.5's (the container's).

Our decoder is PyAV (its wheel bundles FFmpeg); the reference's `torchaudio.load` goes through
torchcodec and the system FFmpeg. PCM and FLAC decode to the same integers, so the features are
identical. Lossy codecs (MP3, Opus, AAC) are decoded by two FFmpeg builds whose float output can
differ in the last bit (measured here: <= 2e-7 in the waveform); the log-mel amplifies that to about
1e-4 in normalised fbank units, so those formats are compared with a 1e-3 tolerance and the measured
difference is reported."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions, Profile, preprocess
from imagebind_vectorizer.preprocess.audio import decode_audio
from imagebind_vectorizer.preprocess.clips import clip_bounds
from tests import media
from tests.helpers import (
    assert_tensors_match,
    assert_vectors_match,
    isolated,
    max_abs,
    record,
    reference_embed,
    write,
)
from tests.reference.official import clip_spacing

LOSSY = {"mp3", "ogg-opus", "m4a-aac"}
LOSSY_FEATURE_ATOL = 1e-3
LOSSY_WAVEFORM_ATOL = 1e-6
SECONDS = [1, 2.61, 5, 10]
#: vectors vs the reference model on the reference features (element difference per vector norm, and
#: norm ratio). Lossless: the same features, measured 0; 1e-5 as for every model comparison. Lossy:
#: features up to 6.5e-5 apart (measured) gave vectors 2.3e-6 apart (norm ratio 1.4e-6); 1e-4 is what
#: features at their bound LOSSY_FEATURE_ATOL (15x the measured) would give, with a 3x margin.
VECTOR_RTOL = {"lossless": 1e-5, "lossy": 1e-4}

CASES = [("wav", channels, rate, seconds)
         for channels in (1, 2) for rate in (44100, 16000, 8000) for seconds in SECONDS]
CASES += [(fmt, 1, media.AUDIO_FORMATS[fmt][2], seconds) for fmt in ("flac", "mp3", "ogg-opus", "m4a-aac")
          for seconds in SECONDS]
CASES += [("mp3", 2, 44100, 2.61)]


def audio_file(fmt: str, channels: int, rate: int, seconds: float) -> bytes:
    samples = media.tone(seconds, rate, freq=330 + 40 * channels, channels=channels, noise=0.1,
                         seed=int(seconds * 100) + channels)
    if fmt == "wav":
        return media.wav_bytes(samples, rate)
    container, codec, _ = media.AUDIO_FORMATS[fmt]
    return media.encoded_audio(samples, rate, container, codec)


@pytest.mark.reference
@pytest.mark.parametrize(("fmt", "channels", "rate", "seconds"), CASES,
                         ids=[f"{f}-{c}ch-{r}Hz-{s}s" for f, c, r, s in CASES])
def test_audio_tensor_and_vector_equal_the_reference(ref, ref_tiny_model, make_embedder, tmp_path: Path,
                                                     fmt: str, channels: int, rate: int, seconds: float) -> None:
    data = audio_file(fmt, channels, rate, seconds)
    path = write(tmp_path, f"clip.{fmt.split('-')[-1]}", data)
    atol = LOSSY_FEATURE_ATOL if fmt in LOSSY else 1e-6
    label = "lossy" if fmt in LOSSY else "lossless"
    results = {}
    for profile, spacing in ((Profile.OFFICIAL, "official"), (Profile.WEAVIATE_LEGACY, "legacy")):
        with clip_spacing(spacing):
            reference = ref.data.load_and_transform_audio_data([str(path)], "cpu")
        ours = preprocess(InputKind.AUDIO, data, PreprocessOptions(profile=profile))
        assert ours.shape == (3, 1, 128, 204)
        assert_tensors_match(ours, reference[0], label=f"tensor audio {label}", atol=atol,
                             what=f"{fmt} {channels}ch {rate} Hz {seconds} s {profile}")
        vector = make_embedder(output_scaling="official", preprocessing=profile.value).embed("audio", [data])
        assert_vectors_match(vector, reference_embed(ref_tiny_model, "audio", reference),
                             label=f"vectors audio {label}", rtol=VECTOR_RTOL[label],
                             what=f"{fmt} {seconds} s {profile}")
        results[profile] = ours
    # Longer than 2 s, the two spacings cut different clips (for 2.61 s the shift stays inside the
    # first 10 ms frame of the middle clip only when rounding allows, so check from 5 s up).
    if seconds >= 5:
        assert not torch.equal(results[Profile.OFFICIAL], results[Profile.WEAVIATE_LEGACY])
    if seconds <= 2:
        assert torch.equal(results[Profile.OFFICIAL], results[Profile.WEAVIATE_LEGACY])


@pytest.mark.reference
@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg-opus", "m4a-aac"])
def test_decoded_waveforms_match_torchaudio(tmp_path: Path, fmt: str) -> None:
    """Where the small feature differences of lossy formats come from: the decoded samples."""
    import torchaudio

    data = media.audio_bytes(fmt, 2.61, channels=2 if fmt == "wav" else 1)
    reference, reference_rate = torchaudio.load(str(write(tmp_path, f"a.{fmt.split('-')[-1]}", data)))
    ours, rate = decode_audio(data, max_seconds=60)
    assert rate == reference_rate and ours.shape == reference.shape
    diff = max_abs(ours, reference)
    record(f"waveform {fmt}", diff)
    assert diff <= (LOSSY_WAVEFORM_ATOL if fmt in LOSSY else 0.0), f"{fmt}: max abs diff {diff:.3g}"


F = Fraction


@pytest.mark.parametrize(("duration", "clips", "minus_one", "starts"), [
    (5, 3, True, [0, F(3, 2), 3]),
    (5, 3, False, [0, 1, 2]),
    (10, 3, True, [0, 4, 8]),
    (10, 3, False, [0, F(8, 3), F(16, 3)]),
    (2.61, 3, True, [0, F(2.61 - 2) / 2, F(2.61 - 2)]),
    (2, 3, True, [0, 0, 0]),
    (1, 3, False, [0, 0, 0]),
    (7, 5, True, [0, F(5, 4), F(5, 2), F(15, 4), 5]),
    (7, 5, False, [0, 1, 2, 3, 4]),
])
def test_clip_bounds_follow_the_spec_examples(duration: float, clips: int, minus_one: bool, starts) -> None:
    bounds = clip_bounds(duration, 2, clips, minus_one=minus_one)
    assert [start for start, _ in bounds] == starts
    assert all(end - start == 2 for start, end in bounds)


@pytest.mark.reference
@pytest.mark.parametrize("clips", [3, 5])
def test_clip_bounds_equal_the_reference_sampler(ref, clips: int) -> None:
    durations = [0.5, 1.999, 2, 2.0005, 2.61, 3, 4.2, 5, 7.77, 10, 31.25, 600]
    for spacing, minus_one in (("official", True), ("legacy", False)):
        with clip_spacing(spacing):
            sampler = ref.clip_sampling.ConstantClipsPerVideoSampler(clip_duration=2, clips_per_video=clips)
            for duration in durations:
                expected = ref.data.get_clip_timepoints(sampler, duration)
                assert clip_bounds(duration, 2, clips, minus_one=minus_one) == expected, (spacing, duration)


# Long and many-channel audio: only the clips' windows are decoded and resampled (in chunks), with
# the memory layout of the reference's views. The numbers stay the reference's to the bit, including
# the float32 all-channel mean, whose rounding depends on that layout (6 channels at 48 kHz, 90001
# samples: the resampled signal is contiguous there, and a clip spanning it is summed as one row).
WINDOWED = [(6, 96000, 412800), (6, 96000, 1184640), (6, 48000, 90001), (1, 8000, 240000), (16, 48000, 120000)]


@pytest.mark.reference
@pytest.mark.parametrize(("channels", "rate", "samples"), WINDOWED,
                         ids=[f"{c}ch-{r}Hz-{n}" for c, r, n in WINDOWED])
def test_windowed_decoding_equals_the_reference(ref, tmp_path: Path, channels: int, rate: int, samples: int) -> None:
    signal = media.tone(samples / rate + 0.1, rate, freq=300, channels=channels, noise=0.1, seed=channels)
    data = media.wav_bytes(signal[:, :samples], rate)
    path = write(tmp_path, "clip.wav", data)
    for profile, spacing in ((Profile.OFFICIAL, "official"), (Profile.WEAVIATE_LEGACY, "legacy")):
        with clip_spacing(spacing):
            reference = ref.data.load_and_transform_audio_data([str(path)], "cpu")[0]
        ours = preprocess(InputKind.AUDIO, data, PreprocessOptions(profile=profile))
        assert_tensors_match(ours, reference, label="tensor audio windowed", what=f"{channels}ch {rate} Hz {profile}")


def many_channel_audio(fmt: str, channels: int, seconds: float) -> bytes:
    signal = media.tone(seconds, 44100, freq=250, channels=channels, noise=0.1, seed=channels)
    if fmt == "wav":
        return media.wav_bytes(signal, 44100)
    return media.encoded_audio(signal, 44100, "wv", "wavpack", sample_format="s16p")  # lossless, decodes planar


MANY_CHANNELS = [("wav", 8, 1.3), ("wav", 16, 1.3), ("wav", 64, 1.3), ("wavpack", 8, 1.3), ("wavpack", 32, 1.3),
                 ("wavpack", 16, 3.1)]


@pytest.mark.reference
@pytest.mark.parametrize(("fmt", "channels", "seconds"), MANY_CHANNELS,
                         ids=[f"{f}-{c}ch-{s}s" for f, c, s in MANY_CHANNELS])
def test_audio_with_8_or_more_channels_equals_the_reference(ref, tmp_path: Path, fmt: str, channels: int,
                                                            seconds: float) -> None:
    """PyAV reads a planar frame's planes up to a NULL pointer that FFmpeg does not write once there
    are 8 channels or more: converting to planar float and calling `to_ndarray()` crashed the process
    with SIGSEGV. Ours runs in a process of its own, so a regression fails this test, not the run.
    WavPack holds the WAV's samples losslessly, so the reference reads the WAV (the system FFmpeg
    behind torchaudio.load cannot pick the stream of a many-channel .wv)."""
    ours = isolated(preprocess, InputKind.AUDIO, many_channel_audio(fmt, channels, seconds), PreprocessOptions())
    wav = write(tmp_path, "many.wav", many_channel_audio("wav", channels, seconds))
    with clip_spacing("official"):
        reference = ref.data.load_and_transform_audio_data([str(wav)], "cpu")[0]
    assert_tensors_match(ours, reference, label="tensor audio many channels", what=f"{fmt} {channels}ch")
