"""Audio -> (3, 1, 128, 204) log-mel clips, exactly as the official loader builds them.

Decode any format FFmpeg reads (WAV, FLAC, MP3, OGG/Opus, M4A/AAC, ...) with PyAV, in memory and
bounded by duration; resample to 16 kHz with torchaudio; cut three 2-second clips; Kaldi fbank
(torchaudio.compliance.kaldi) on channel 0 with 128 mel bins; pad/crop to 204 frames; normalise."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import torch
import torchaudio
from torch.nn import functional as F

from imagebind_vectorizer.errors import InputError, first_line
from imagebind_vectorizer.kinds import AUDIO_CLIPS
from imagebind_vectorizer.preprocess.clips import clip_bounds
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions

SAMPLE_RATE = 16_000
CLIP_SECONDS = 2
CLIPS = AUDIO_CLIPS
MEL_BINS = 128
TARGET_FRAMES = 204
FBANK_MEAN = -4.268
FBANK_STD = 9.138
MIN_SAMPLES = 400  # one 25 ms Kaldi frame at 16 kHz; the official loader divides by zero below it


def decode_audio(data: bytes, max_seconds: float) -> tuple[torch.Tensor, int]:
    """(channels, samples) float32 in [-1, 1] and the sample rate, decoding at most `max_seconds`."""
    if not data:
        raise InputError("empty audio", reason="empty")
    truncated = wav_truncation(data[:64 * 1024], len(data))
    if truncated:
        raise InputError(truncated, reason="decode")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:
        raise InputError(f"not an audio file FFmpeg can read: {first_line(exc)}", reason="decode") from exc
    with container:
        if not container.streams.audio:
            raise InputError("no audio stream in the file", reason="decode")
        stream = container.streams.audio[0]
        rate = stream.rate or stream.codec_context.sample_rate
        if not rate:
            raise InputError("audio stream has no sample rate", reason="decode")
        header_seconds = _header_seconds(container, stream)
        if header_seconds is not None and header_seconds > max_seconds + 1:
            raise InputError(f"audio is {header_seconds:.1f} s long, over the limit of {max_seconds:g} s",
                             reason="too_long")
        max_samples = int(max_seconds * rate) + 1
        to_float = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for converted in to_float.resample(frame):
                    samples = converted.to_ndarray()
                    chunks.append(samples)
                    total += samples.shape[1]
                if total > max_samples:
                    raise InputError(f"audio is longer than the limit of {max_seconds:g} s", reason="too_long")
            for converted in to_float.resample(None):
                chunks.append(converted.to_ndarray())
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"corrupt audio: {first_line(exc)}", reason="decode") from exc
    if not chunks:
        raise InputError("the audio stream holds no samples", reason="decode")
    channels = {c.shape[0] for c in chunks}
    if len(channels) != 1:
        raise InputError("the channel count changes inside the stream", reason="decode")
    waveform = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32, copy=False))
    if not torch.isfinite(waveform).all():
        raise InputError("audio holds non-finite samples", reason="invalid")
    return waveform, int(rate)


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
    if rate != SAMPLE_RATE:
        waveform = torchaudio.functional.resample(waveform, orig_freq=rate, new_freq=SAMPLE_RATE)
    else:
        waveform = waveform.clone()  # the in-place mean subtraction must not touch the caller's data
    if waveform.shape[1] < MIN_SAMPLES:
        raise InputError(f"audio is {waveform.shape[1] / SAMPLE_RATE * 1000:.1f} ms long; at least 25 ms "
                         "is needed", reason="too_short")
    duration = waveform.shape[1] / SAMPLE_RATE
    clips = []
    for start, end in clip_bounds(duration, CLIP_SECONDS, CLIPS, minus_one=minus_one):
        segment = waveform[:, int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)]
        clips.append(log_mel_clip(segment))
    # As torchvision's Normalize: float32 mean and std, subtract then divide.
    mean = torch.tensor(FBANK_MEAN, dtype=torch.float32)
    std = torch.tensor(FBANK_STD, dtype=torch.float32)
    return torch.stack(clips).sub_(mean).div_(std)


def preprocess_audio(data: bytes, options: PreprocessOptions) -> torch.Tensor:
    limits = options.limits
    waveform, rate = decode_audio(data, limits.max_audio_seconds)
    return waveform_to_clips(waveform, rate, minus_one=options.behaviour.clip_spacing_minus_one)


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
