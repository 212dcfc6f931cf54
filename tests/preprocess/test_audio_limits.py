"""What audio may cost: memory bounded by the clips' windows (not by duration or the decoded file),
channel counts and sample rates refused clearly where FFmpeg or the resampler would fail or blow up,
and headers that lie about the length handled by a second decoding pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions, preprocess
from tests import media
from tests.helpers import peak_rss_after, write

pytestmark = pytest.mark.timeout(120)


def audio_error(data: bytes) -> InputError:
    with pytest.raises(InputError) as info:
        preprocess(InputKind.AUDIO, data, PreprocessOptions())
    return info.value


def test_long_many_channel_audio_decodes_in_memory_bounded_by_the_clips(tmp_path: Path) -> None:
    """Issue case: a 203 KB FLAC (10 min, 96 kHz, 6 channels) raised the peak RSS by 5.9 GiB, as
    every channel was decoded to float32, concatenated and resampled whole. Here 2 minutes of the
    same (~1.3 GiB decoded the old way) must stay within a few dozen MiB, and no more than a
    20-second file needs: the memory follows the clips' windows, not the duration."""
    warm_up = write(tmp_path, "warm.wav", media.wav_bytes(media.tone(5, 96000, channels=6), 96000))
    short = write(tmp_path, "short.flac", media.sparse_audio(20, 96000, 6))
    long = write(tmp_path, "long.flac", media.sparse_audio(120, 96000, 6))
    _, base, after_short, after_long = peak_rss_after(
        [("audio", warm_up, "official"), ("audio", short, "official"), ("audio", long, "official")])
    grown = after_long - base
    assert grown < 48, f"decoding 2 min of 96 kHz 6-channel audio raised the peak RSS by {grown:.0f} MiB"
    assert after_long - after_short < 8, f"6x the duration cost {after_long - after_short:.0f} MiB more"


def test_more_channels_than_ffmpeg_can_convert_are_refused() -> None:
    error = audio_error(media.wav_bytes(media.tone(0.1, 16000, channels=65), 16000))
    assert error.reason == "invalid" and "65 channels" in error.message and "64" in error.message


@pytest.mark.parametrize("rate", [44101, 96001])
def test_sample_rates_whose_ratio_does_not_reduce_are_refused_before_building_a_filter(rate: int) -> None:
    """torchaudio's sinc kernel has (16000 / gcd) phases of (rate / gcd + taps) values: 44101 Hz
    would need 2.8 GB, 96001 Hz 6 GB, for a 0.1 s file."""
    error = audio_error(media.wav_bytes(media.tone(0.1, rate), rate))
    assert error.reason == "invalid" and f"{rate} Hz" in error.message


def test_sample_rates_over_768_khz_are_refused() -> None:
    error = audio_error(media.wav_bytes(media.tone(0.01, 1_000_000), 1_000_000))
    assert error.reason == "invalid" and "1000000 Hz" in error.message


def flac_announcing(data: bytes, samples: int) -> bytes:
    """The FLAC with its STREAMINFO's 36-bit total sample count replaced."""
    assert data[:4] == b"fLaC"
    start = 4 + 4 + 13  # magic, block header, then STREAMINFO's 13th byte holds the count's top 4 bits
    head = bytearray(data)
    head[start] = (head[start] & 0xF0) | ((samples >> 32) & 0x0F)
    head[start + 1:start + 5] = (samples & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(head)


@pytest.mark.parametrize("announced", [1000, 300_000, 10_000_000])
def test_a_header_that_lies_about_the_length_gives_the_true_clips(announced: int) -> None:
    """The clip positions follow the decoded length; a header count is only a first guess."""
    true = media.encoded_audio(media.tone(6.3, 22050, channels=2, noise=0.1), 22050, "flac", "flac")
    lying = flac_announcing(true, announced)
    assert lying != true
    assert torch.equal(preprocess(InputKind.AUDIO, lying, PreprocessOptions()),
                       preprocess(InputKind.AUDIO, true, PreprocessOptions()))
