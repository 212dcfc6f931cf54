"""Chosen ranges of `torchaudio.functional.resample(x, rate, 16000)`, bit for bit, fed the input in
order and holding only a chunk of it.

torchaudio resamples with a polyphase sinc filter: with both rates divided by their gcd (`orig`,
`new`), output block b (outputs b*new .. b*new + new - 1) is one step of a conv1d with stride `orig`
over the input samples [b*orig - width, b*orig + orig + width), zero outside the signal. Any range of
outputs can therefore be computed from the input around it with the same kernel and the same conv1d.
The values are identical as long as conv1d takes the same code path as it did on the whole signal:
torch picks oneDNN for a batch of more than one channel or an input of more than 20480 samples
(`use_mkldnn` in ATen's Convolution.cpp), so every chunk here is at least MIN_CHUNK_INPUT samples long
and callers resample inputs shorter than that whole, as the official loader does. The parity tests
(tests/preprocess/test_audio_preprocess.py) hold this to a maximum difference of zero."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio
from torch.nn import functional as F

#: shortest chunk of input a conv1d runs on: far above torch's 20480-sample switch to oneDNN
MIN_CHUNK_INPUT = 1 << 16
#: largest sinc kernel built (new x taps float32 values, 16 MiB). Rates whose ratio to the target
#: reduces badly (44101 Hz: 16000 phases of 44135 taps, 2.8 GB) are refused rather than built.
MAX_KERNEL_VALUES = 1 << 22
_ROLLOFF = 0.99  # torchaudio's defaults, which the official loader uses
_LOWPASS_WIDTH = 6


def reduced_ratio(rate: int, target: int) -> tuple[int, int]:
    gcd = math.gcd(rate, target)
    return rate // gcd, target // gcd


def kernel_values(rate: int, target: int) -> int:
    """How many float32 values the sinc kernel for `rate` -> `target` holds (torchaudio's sizing)."""
    orig, new = reduced_ratio(rate, target)
    width = math.ceil(_LOWPASS_WIDTH * orig / (min(orig, new) * _ROLLOFF))
    return new * (2 * width + orig)


@functools.lru_cache(maxsize=4)
def sinc_kernel(rate: int, target: int) -> tuple[torch.Tensor, int]:
    """torchaudio's kernel for float32 input (what `functional.resample` builds on each call) and its
    half width."""
    resampler = torchaudio.transforms.Resample(rate, target, dtype=torch.float32)
    return resampler.kernel, resampler.width


def resampled_length(length: int, rate: int, target: int) -> int:
    """Output length, computed as torchaudio computes it (a float32 ceil: it can differ from the exact
    one for long inputs, and the reference's clip positions follow torchaudio)."""
    if rate == target:
        return length
    orig, new = reduced_ratio(rate, target)
    return int(torch.ceil(torch.as_tensor(new * length / orig)).long())


def resampled_is_contiguous(length: int, rate: int, target: int) -> bool:
    """Whether torchaudio's result for `length` input samples is a contiguous tensor: it computes
    length // orig + 1 whole blocks and returns a view of the first `resampled_length` outputs.
    Reductions over a view of a strided tensor add in another order than over a contiguous one, so
    a clip spanning the whole signal needs the same layout for its mean to match to the bit."""
    if rate == target:
        return True
    orig, new = reduced_ratio(rate, target)
    return (length // orig + 1) * new == resampled_length(length, rate, target)


@dataclass(eq=False)
class _Target:
    start: int  # first output index held by `out`
    out: torch.Tensor  # (channels, n) view the outputs are written into


@dataclass(eq=False)
class _Chunk:
    """One conv1d call: output blocks [block_lo, block_hi) from input [in_lo, in_hi)."""

    target: _Target
    block_lo: int
    in_lo: int
    in_hi: int
    buffer: torch.Tensor | None = None
    done: bool = False


class WindowedResampler:
    """Writes outputs [start, start + n) of the resampled signal into each target view.

    `length` is the input's length in samples; feed the input with `feed(offset, samples)` in order
    (gaps allowed where `needed_input()` says nothing is needed), then call `finish()`."""

    def __init__(self, rate: int, target: int, length: int, targets: list[tuple[int, torch.Tensor]]) -> None:
        self.length = length
        self.identity = rate == target
        self._targets = [_Target(start, out) for start, out in targets]
        self._chunks: list[_Chunk] = []
        if self.identity:
            self.orig = self.new = 1
            self.width = 0
            self.kernel = None
            return
        self.orig, self.new = reduced_ratio(rate, target)
        self.kernel, self.width = sinc_kernel(rate, target)
        per_chunk = max(1, math.ceil(MIN_CHUNK_INPUT / self.orig))  # blocks per conv1d call
        for tgt in self._targets:
            first = tgt.start // self.new
            stop = -(-(tgt.start + tgt.out.shape[1]) // self.new)
            for lo in range(first, stop, per_chunk):
                hi = lo + per_chunk  # the last chunk may run past the range: extra outputs are dropped
                self._chunks.append(_Chunk(tgt, lo, lo * self.orig - self.width, hi * self.orig + self.width))

    def needed_input(self) -> list[tuple[int, int]]:
        """Merged input ranges (within [0, length)) the targets depend on."""
        if self.identity:
            spans = [(t.start, t.start + t.out.shape[1]) for t in self._targets]
        else:
            spans = [(c.in_lo, c.in_hi) for c in self._chunks]
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted((max(lo, 0), min(hi, self.length)) for lo, hi in spans):
            if hi <= lo:
                continue
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return merged

    def feed(self, offset: int, samples: np.ndarray) -> None:
        """`samples` is (channels, k) float32 holding input samples offset .. offset + k - 1."""
        end = offset + samples.shape[1]
        if self.identity:
            for tgt in self._targets:
                lo, hi = max(offset, tgt.start), min(end, tgt.start + tgt.out.shape[1])
                if lo < hi:
                    tgt.out[:, lo - tgt.start: hi - tgt.start] = torch.from_numpy(samples[:, lo - offset: hi - offset])
            return
        for chunk in self._chunks:
            if chunk.done:
                continue
            lo, hi = max(offset, chunk.in_lo), min(end, chunk.in_hi)
            if lo < hi:
                if chunk.buffer is None:  # zeros stand for the padding outside the signal
                    chunk.buffer = torch.zeros(samples.shape[0], chunk.in_hi - chunk.in_lo)
                part = torch.from_numpy(samples[:, lo - offset: hi - offset])
                chunk.buffer[:, lo - chunk.in_lo: hi - chunk.in_lo] = part
            if end >= min(chunk.in_hi, self.length):
                self._compute(chunk, samples.shape[0])

    def finish(self, channels: int) -> None:
        """Compute what is left (chunks reaching past the end of the input)."""
        for chunk in self._chunks:
            if not chunk.done:
                self._compute(chunk, channels)

    def _compute(self, chunk: _Chunk, channels: int) -> None:
        assert self.kernel is not None
        buffer = chunk.buffer if chunk.buffer is not None else torch.zeros(channels, chunk.in_hi - chunk.in_lo)
        chunk.buffer, chunk.done = None, True
        blocks = F.conv1d(buffer[:, None], self.kernel, stride=self.orig)  # (channels, new, blocks)
        outputs = blocks.transpose(1, 2).reshape(channels, -1)
        first, tgt = chunk.block_lo * self.new, chunk.target
        lo = max(first, tgt.start)
        hi = min(first + outputs.shape[1], tgt.start + tgt.out.shape[1])
        if lo < hi:
            tgt.out[:, lo - tgt.start: hi - tgt.start] = outputs[:, lo - first: hi - first]
