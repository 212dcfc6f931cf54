"""A long audio file -> one (3, 1, 128, 204) input per window, decoded once as a stream.

Packets are decoded one at a time, so a packet the codec refuses damages only the windows around
it; samples are kept only until the windows that need them are cut; each window goes through
exactly the recipe a file of its own would (`waveform_to_clips`: resample to 16 kHz, 3 clips of
2 s spread over the window, Kaldi fbank on channel 0)."""

from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np
import torch

from imagebind_vectorizer.errors import InputError, first_line
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.moments import SourceLimits, Window, WindowSpec
from imagebind_vectorizer.preprocess.audio import MIN_SAMPLES, SAMPLE_RATE, waveform_to_clips
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions
from imagebind_vectorizer.preprocess.segments.source import (
    Source,
    open_container,
    stream_seconds,
    truncation,
)
from imagebind_vectorizer.preprocess.segments.timeline import SampleTimeline
from imagebind_vectorizer.preprocess.segments.types import SegmentInput

#: samples (all channels together) one window may hold before resampling: 64 M floats = 256 MiB
MAX_WINDOW_VALUES = 64 * 1024 * 1024


def to_float_samples(frames: list[av.AudioFrame], resampler: av.AudioResampler) -> list[np.ndarray]:
    """Decoded frames -> (channels, n) float32 arrays. Packed float32 (one plane) rather than
    planar: PyAV's planar path crashes the process for streams of 8 or more channels."""
    out = []
    for frame in frames:
        channels = frame.layout.nb_channels
        for converted in resampler.resample(frame):
            flat = converted.to_ndarray().reshape(-1)
            out.append(np.ascontiguousarray(flat.reshape(-1, channels).T))
    return out


def window_rows(waveform: np.ndarray, rate: int, options: PreprocessOptions) -> torch.Tensor:
    """One window's samples -> the audio recipe's (3, 1, 128, 204) model input."""
    tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    if not torch.isfinite(tensor).all():
        raise InputError("audio holds non-finite samples", reason="invalid")
    return waveform_to_clips(tensor, rate, minus_one=options.behaviour.clip_spacing_minus_one)


def audio_part(timeline: SampleTimeline, window: Window, options: PreprocessOptions,
               ) -> tuple[torch.Tensor | None, InputError | None]:
    """The window's audio input, or why there is none (damage, too short: None, None)."""
    damage = timeline.damage_in(window.start, window.end)
    if damage is not None:
        return None, InputError(f"audio from {damage[0]:.2f} s to {damage[1]:.2f} s could not be decoded",
                                reason="decode")
    waveform = timeline.slice(window.start, window.end)
    resampled = waveform.shape[1] * SAMPLE_RATE / timeline.rate
    if resampled < MIN_SAMPLES:
        return None, None
    try:
        return window_rows(waveform, timeline.rate, options), None
    except InputError as exc:
        return None, exc


def audio_windows(source: Source, spec: WindowSpec, options: PreprocessOptions,
                  limits: SourceLimits) -> Iterator[SegmentInput]:
    """Windows of the first audio stream, in order. Raises InputError before the first window for
    a file that cannot be used at all, and after the last good window when the rest is lost."""
    with open_container(source, "audio") as container:
        if not container.streams.audio:
            raise InputError("no audio stream in the file", reason="decode")
        stream = container.streams.audio[0]
        rate = stream.rate or stream.codec_context.sample_rate
        if not rate:
            raise InputError("audio stream has no sample rate", reason="decode")
        announced = stream_seconds(container, stream)
        limits.check_seconds(announced)
        channels = max(stream.codec_context.channels or 1, 1)
        per_window = int(spec.seconds * rate) + 1
        if per_window * channels > MAX_WINDOW_VALUES:
            raise InputError(f"{channels} channels at {rate} Hz make a {spec.seconds:g} s window of "
                             f"{per_window * channels} samples, over the limit of {MAX_WINDOW_VALUES}; use "
                             "shorter windows", reason="too_large")
        timeline = SampleTimeline(rate, max_buffer_samples=2 * per_window + rate)
        resampler = av.AudioResampler(format="flt")
        next_index = 0
        time_base = stream.time_base

        def ready() -> Iterator[SegmentInput]:
            nonlocal next_index
            while True:
                window = spec.window(next_index, timeline.end_s if timeline.finished else None)
                if window is None or not timeline.covers(window.end):
                    return
                rows, error = audio_part(timeline, window, options)
                if rows is None and error is None:
                    error = InputError("the window holds less than 25 ms of audio", reason="too_short")
                yield SegmentInput(window, {InputKind.AUDIO: rows} if rows is not None else {},
                                   {InputKind.AUDIO: error} if error is not None else {})
                next_index += 1
                following = spec.window(next_index)
                timeline.discard_before(following.start if following else window.end)

        fatal: InputError | None = None
        try:
            for packet in container.demux(stream):
                pts_s = float(packet.pts * time_base) if packet.pts is not None and time_base else None
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    if pts_s is not None and packet.duration and time_base:
                        timeline.mark_damage(pts_s - (timeline.origin_s or 0.0),
                                             pts_s - (timeline.origin_s or 0.0) + float(packet.duration * time_base))
                    continue
                for frame, samples in zip(frames, to_float_samples(frames, resampler), strict=False):
                    frame_s = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base \
                        else None
                    timeline.add(samples, frame_s)
                limits.check_seconds(timeline.end_s, decoded=True)
                yield from ready()
        except InputError:
            raise
        except Exception as exc:  # the demuxer gave up: keep what was decoded, report the rest
            fatal = InputError(f"the audio stream breaks off at {timeline.end_s:.2f} s: {first_line(exc)}",
                               reason="decode")
        timeline.finished = True
        if timeline.channels is None:
            raise InputError("the audio stream holds no samples", reason="decode")
        truncated = truncation(source)
        if fatal is None and truncated:
            fatal = InputError(truncated, reason="decode")
        if fatal is None and announced is not None and timeline.end_s < announced - 1.0:
            fatal = InputError(f"audio is truncated: the header announces {announced:.2f} s but only "
                               f"{timeline.end_s:.2f} s decode", reason="decode")
        yield from ready()
        if fatal is not None:
            raise fatal
