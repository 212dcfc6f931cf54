"""Audio -> (3, 1, 128, 204) log-mel clips, exactly as the official loader builds them, holding only
what the clips use.

The official loader decodes every channel of the whole file, resamples all of it to 16 kHz, and cuts
three 2-second clips; for each clip it subtracts the mean over *all channels* (in place, so
overlapping clips see the shifted samples) and runs Kaldi fbank (torchaudio.compliance.kaldi, 128 mel
bins) on channel 0; then pads/crops to 204 frames and normalises. We compute the same numbers, to the
bit, without the whole signal:
1. the sample count fixes the clip positions: taken from the header and checked at the end (a second
   decoding pass follows only when the header was wrong), or counted by a first pass;
2. one decoding pass converts only the frames the clips depend on, and resamples them in chunks with
   torchaudio's own kernel (preprocess/resample.py);
3. the clips' (channels x 2 s at 16 kHz) windows are the only signal held, with the memory layout the
   reference's views have, so even the float32 mean adds up in the same order.
Inputs under MIN_CHUNK_INPUT samples are small: they are decoded whole and resampled as the reference
does. Decoding is PyAV (FFmpeg), in memory, bounded by duration, channels and sample rate."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import torch
import torchaudio
from torch.nn import functional as F

from imagebind_vectorizer.errors import InputError, first_line
from imagebind_vectorizer.kinds import AUDIO_CLIPS
from imagebind_vectorizer.preprocess.clips import clip_bounds
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions
from imagebind_vectorizer.preprocess.resample import (
    MAX_KERNEL_VALUES,
    MIN_CHUNK_INPUT,
    WindowedResampler,
    kernel_values,
    resampled_is_contiguous,
    resampled_length,
)

SAMPLE_RATE = 16_000
CLIP_SECONDS = 2
CLIPS = AUDIO_CLIPS
MEL_BINS = 128
TARGET_FRAMES = 204
FBANK_MEAN = -4.268
FBANK_STD = 9.138
MIN_SAMPLES = 400  # one 25 ms Kaldi frame at 16 kHz; the official loader divides by zero below it
#: libswresample's SWR_CH_MAX: FFmpeg cannot convert audio with more channels
MAX_CHANNELS = 64
#: 768 kHz is the highest rate audio interfaces record; beyond, a tiny file would decode for minutes
MAX_SAMPLE_RATE = 768_000


class AudioSource:
    """The first audio stream of an upload, checked against the limits, decodable more than once.

    Frames are converted to packed float32 ("flt"): PyAV's `AudioFrame.to_ndarray()` finds a planar
    frame's planes by scanning `extended_data` for a NULL pointer, but FFmpeg allocates exactly one
    pointer per channel, with no terminator, once there are 8 or more: PyAV then reads past the array
    and dereferences garbage (SIGSEGV). A packed frame has a single plane, which PyAV finds safely."""

    def __init__(self, data: bytes, max_seconds: float) -> None:
        if not data:
            raise InputError("empty audio", reason="empty")
        truncated = wav_truncation(data[:64 * 1024], len(data))
        if truncated:
            raise InputError(truncated, reason="decode")
        self.data = data
        self.max_seconds = max_seconds
        with self._open() as container:
            if not container.streams.audio:
                raise InputError("no audio stream in the file", reason="decode")
            stream = container.streams.audio[0]
            self.rate = int(stream.rate or stream.codec_context.sample_rate or 0)
            if not self.rate:
                raise InputError("audio stream has no sample rate", reason="decode")
            if self.rate > MAX_SAMPLE_RATE:
                raise InputError(f"audio sample rate is {self.rate} Hz; at most {MAX_SAMPLE_RATE} Hz is accepted",
                                 reason="invalid")
            self.channels = stream.codec_context.channels
            if not self.channels:
                raise InputError("audio stream has no channels", reason="decode")
            if self.channels > MAX_CHANNELS:
                raise InputError(f"audio has {self.channels} channels; at most {MAX_CHANNELS} are supported",
                                 reason="invalid")
            if self.rate != SAMPLE_RATE and kernel_values(self.rate, SAMPLE_RATE) > MAX_KERNEL_VALUES:
                raise InputError(f"audio sample rate {self.rate} Hz cannot be resampled to {SAMPLE_RATE} Hz "
                                 "within the memory bound (the ratio of the two rates does not reduce); "
                                 "use a common rate such as 44100 or 48000 Hz", reason="invalid")
            seconds = _header_seconds(container, stream)
            if seconds is not None and seconds > max_seconds + 1:
                raise InputError(f"audio is {seconds:.1f} s long, over the limit of {max_seconds:g} s",
                                 reason="too_long")
            self.header_samples = _header_samples(stream, self.rate)
        self.max_samples = int(max_seconds * self.rate) + 1

    def _open(self) -> av.container.InputContainer:
        try:
            return av.open(io.BytesIO(self.data), mode="r")
        except Exception as exc:
            raise InputError(f"not an audio file FFmpeg can read: {first_line(exc)}", reason="decode") from exc

    def frames(self) -> Iterator[tuple[int, av.AudioFrame]]:
        """(offset in samples, frame) for every frame, refusing to run past the duration limit."""
        with self._open() as container:
            stream = container.streams.audio[0]
            offset = 0
            try:
                for frame in container.decode(stream):
                    if frame.layout.nb_channels != self.channels:
                        raise InputError("the channel count changes inside the stream", reason="decode")
                    if frame.sample_rate != self.rate:
                        raise InputError("the sample rate changes inside the stream", reason="decode")
                    yield offset, frame
                    offset += frame.samples
                    if offset > self.max_samples:
                        raise InputError(f"audio is longer than the limit of {self.max_seconds:g} s",
                                         reason="too_long")
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"corrupt audio: {first_line(exc)}", reason="decode") from exc

    def count_samples(self) -> int:
        return sum(frame.samples for _, frame in self.frames())

    def decode(self, wanted: list[tuple[int, int]], sink) -> int:  # type: ignore[no-untyped-def]
        """Call `sink(offset, samples)` with (channels, k) float32 arrays covering at least the
        sample ranges in `wanted` (sorted, disjoint), in order; returns the total sample count."""
        converter = av.AudioResampler(format="flt")
        total, index = 0, 0
        for offset, frame in self.frames():
            end = total = offset + frame.samples
            while index < len(wanted) and wanted[index][1] <= offset:
                index += 1
            if index == len(wanted) or wanted[index][0] >= end:
                continue  # no sample of this frame is used: not even converted
            converted = 0
            for packed in converter.resample(frame):
                samples = packed.to_ndarray().reshape(packed.samples, -1).T
                if not np.isfinite(samples).all():
                    raise InputError("audio holds non-finite samples", reason="invalid")
                sink(offset + converted, samples)
                converted += packed.samples
            if converted != frame.samples:  # a format conversion never buffers; guard the offsets anyway
                raise InputError("audio frames could not be converted sample for sample", reason="decode")
        if not total:
            raise InputError("the audio stream holds no samples", reason="decode")
        return total


def decode_audio(data: bytes, max_seconds: float) -> tuple[torch.Tensor, int]:
    """The whole signal: (channels, samples) float32 in [-1, 1] and the sample rate."""
    source = AudioSource(data, max_seconds)
    chunks: list[np.ndarray] = []
    source.decode([(0, source.max_samples)], lambda offset, samples: chunks.append(samples))
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32)), source.rate


def log_mel_clip(clip: torch.Tensor) -> torch.Tensor:
    """One clip -> (1, 128, 204). Subtracts the clip's mean *in place*: the official loader does,
    and since clips can overlap, later clips see the shifted samples; parity needs the same."""
    clip -= clip.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        clip, htk_compat=True, sample_frequency=SAMPLE_RATE, use_energy=False, window_type="hanning",
        num_mel_bins=MEL_BINS, dither=0.0, frame_length=25, frame_shift=10,
    ).transpose(0, 1)
    missing = TARGET_FRAMES - fbank.shape[1]
    fbank = F.pad(fbank, (0, missing)) if missing > 0 else fbank[:, :TARGET_FRAMES]
    return fbank[None]


def waveform_to_clips(waveform: torch.Tensor, rate: int, *, minus_one: bool) -> torch.Tensor:
    """A whole (channels, samples) waveform -> (3, 1, 128, 204), exactly as the official loader: resample
    all of it, cut the clips as views, features in order (the mean subtraction is in place)."""
    if rate != SAMPLE_RATE:
        waveform = torchaudio.functional.resample(waveform, orig_freq=rate, new_freq=SAMPLE_RATE)
    else:
        waveform = waveform.clone()  # the in-place mean subtraction must not touch the caller's data
    plan = _ClipPlan.make(waveform.shape[1], SAMPLE_RATE, minus_one=minus_one)
    return _features([waveform[:, start:end] for start, end in plan.clips])


def _features(clips: list[torch.Tensor]) -> torch.Tensor:
    features = [log_mel_clip(clip) for clip in clips]  # in order: the mean subtraction is in place
    # As torchvision's Normalize: float32 mean and std, subtract then divide.
    mean = torch.tensor(FBANK_MEAN, dtype=torch.float32)
    std = torch.tensor(FBANK_STD, dtype=torch.float32)
    return torch.stack(features).sub_(mean).div_(std)


@dataclass(frozen=True)
class _ClipPlan:
    """Where the clips lie in the 16 kHz signal of `length` input samples."""

    length: int
    resampled: int  # samples at 16 kHz
    clips: list[tuple[int, int]]  # [start, end) in the 16 kHz signal, as the reference slices
    segments: list[tuple[int, int]]  # the clips' union, overlapping clips merged

    @classmethod
    def make(cls, length: int, rate: int, *, minus_one: bool) -> _ClipPlan:
        resampled = resampled_length(length, rate, SAMPLE_RATE)
        if resampled < MIN_SAMPLES:
            raise InputError(f"audio is {resampled / SAMPLE_RATE * 1000:.1f} ms long; at least 25 ms "
                             "is needed", reason="too_short")
        clips = []
        for start, end in clip_bounds(resampled / SAMPLE_RATE, CLIP_SECONDS, CLIPS, minus_one=minus_one):
            clips.append((min(int(start * SAMPLE_RATE), resampled), min(int(end * SAMPLE_RATE), resampled)))
        segments: list[tuple[int, int]] = []
        for start, end in sorted(clips):
            if segments and start < segments[-1][1]:
                segments[-1] = (segments[-1][0], max(segments[-1][1], end))
            else:
                segments.append((start, end))
        return cls(length, resampled, clips, segments)


def _whole_waveform(source: AudioSource, length: int) -> torch.Tensor | None:
    """Short inputs are decoded whole, as the reference does. None when the stream holds more
    samples than planned (a wrong header)."""
    chunks: list[np.ndarray] = []
    total = source.decode([(0, length + 1)], lambda offset, samples: chunks.append(samples))
    if total != length:
        return None
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(chunks, axis=1)[:, :total], dtype=np.float32))


def _windowed_clips(source: AudioSource, plan: _ClipPlan) -> tuple[list[torch.Tensor], int]:
    """Long inputs: only the clip windows, resampled in chunks while decoding."""
    channels = source.channels
    buffers = []
    for start, end in plan.segments:
        if (start, end) == (0, plan.resampled) and resampled_is_contiguous(plan.length, source.rate, SAMPLE_RATE):
            buffers.append(torch.empty(channels, end - start))
        else:  # a view into a wider tensor, as the reference's clip is a view of the whole signal
            buffers.append(torch.empty(channels, end - start + 1)[:, : end - start])
    resampler = WindowedResampler(source.rate, SAMPLE_RATE, plan.length,
                                  [(start, buffer) for (start, _), buffer in zip(plan.segments, buffers, strict=True)])
    total = source.decode(resampler.needed_input(), resampler.feed)
    if total == plan.length:
        resampler.finish(channels)
    clips = []
    for start, end in plan.clips:
        index = next(i for i, (lo, hi) in enumerate(plan.segments) if lo <= start and end <= hi)
        lo = plan.segments[index][0]
        clips.append(buffers[index][:, start - lo: end - lo])
    return clips, total


def preprocess_audio(data: bytes, options: PreprocessOptions) -> torch.Tensor:
    source = AudioSource(data, options.limits.max_audio_seconds)
    minus_one = options.behaviour.clip_spacing_minus_one
    length = source.header_samples
    for _ in range(2):
        if length is None:
            length = source.count_samples()
            if not length:
                raise InputError("the audio stream holds no samples", reason="decode")
        if length <= MIN_CHUNK_INPUT:
            waveform = _whole_waveform(source, length)
            if waveform is None:
                length = None  # the header was wrong: count, then decode again
                continue
            return waveform_to_clips(waveform, source.rate, minus_one=minus_one)
        plan = _ClipPlan.make(length, source.rate, minus_one=minus_one)
        clips, total = _windowed_clips(source, plan)
        if total != length:
            length = total  # the header was wrong; this pass counted
            continue
        return _features(clips)
    raise InputError("the audio stream decodes to a different length each time", reason="decode")


def _header_samples(stream: av.audio.stream.AudioStream, rate: int) -> int | None:
    """The sample count the header announces, when it is counted in samples (checked later)."""
    if stream.duration is None or stream.time_base is None or Fraction(stream.time_base) != Fraction(1, rate):
        return None
    return int(stream.duration) if stream.duration > 0 else None


def _header_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def wav_truncation(head: bytes, size: int) -> str | None:
    """Why a RIFF/WAVE file of `size` bytes, whose first bytes are `head`, was cut short, or None.
    FFmpeg decodes whatever samples are present and clamps the duration to them, so a truncated
    upload would silently embed a fragment."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(head):
        chunk, length = head[offset:offset + 4], struct.unpack_from("<I", head, offset + 4)[0]
        if chunk == b"data":
            available = size - offset - 8
            # 0 and 0xFFFFFFFF are what streaming writers leave when the length was unknown.
            if length not in (0, 0xFFFFFFFF) and available < length:
                return (f"WAV file is truncated: its header announces {length} bytes of samples but the file "
                        f"holds {available}")
            return None
        offset += 8 + length + (length & 1)  # chunks are padded to an even length
    return None
