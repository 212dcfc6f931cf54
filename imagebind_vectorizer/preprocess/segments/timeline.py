"""Decoded audio laid on a timeline, holding only what the next windows still need.

Samples are placed by count from the stream's first sample (as a decoder does for a file of its
own), and pts is only used to notice holes: a stretch the demuxer skipped (a corrupt page, a
damaged cluster) is filled with silence, so later windows keep their times, and is recorded as
damage so the windows that overlap it are reported instead of embedded."""

from __future__ import annotations

import numpy as np

#: a gap between the samples decoded so far and a frame's pts larger than this is damage, not jitter
GAP_TOLERANCE_S = 0.05


class SampleTimeline:
    def __init__(self, rate: int, *, origin_s: float | None = None, max_buffer_samples: int) -> None:
        self.rate = rate
        self.origin_s = origin_s  # the time of sample 0; None: the first frame's pts
        self.max_buffer_samples = max_buffer_samples
        self.channels: int | None = None
        self.damage: list[tuple[float, float]] = []  # (start, end) seconds
        self._chunks: list[np.ndarray] = []  # (channels, n) float32, contiguous from _base
        self._base = 0  # absolute index of the first buffered sample
        self._end = 0  # absolute index one past the last sample received
        self.finished = False

    @property
    def end_s(self) -> float:
        return self._end / self.rate

    def add(self, samples: np.ndarray, pts_s: float | None) -> None:
        """Append (channels, n) float32 samples that start at `pts_s` seconds (None: unknown)."""
        if self.channels is None:
            self.channels = samples.shape[0]
        elif samples.shape[0] != self.channels:
            raise ValueError("the channel count changes inside the stream")
        if pts_s is not None:
            if self.origin_s is None:
                self.origin_s = pts_s
            position = round((pts_s - self.origin_s) * self.rate)
            if position < 0:  # starts before the timeline (e.g. audio ahead of the first video frame)
                samples = samples[:, -position:]
                position = 0
            if position - self._end > GAP_TOLERANCE_S * self.rate:
                self.mark_damage(self._end / self.rate, position / self.rate)
                self._append(np.zeros((samples.shape[0], position - self._end), dtype=np.float32))
        if samples.shape[1]:
            self._append(samples)

    def mark_damage(self, start_s: float, end_s: float) -> None:
        self.damage.append((max(start_s, 0.0), end_s))

    def damage_in(self, start_s: float, end_s: float) -> tuple[float, float] | None:
        """The first damaged stretch overlapping [start_s, end_s), if any."""
        for low, high in self.damage:
            if low < end_s and high > start_s:
                return low, high
        return None

    def covers(self, end_s: float) -> bool:
        return self.finished or self._end >= round(end_s * self.rate)

    def slice(self, start_s: float, end_s: float) -> np.ndarray:
        """Samples [round(start * rate), round(end * rate)), cut short at the end of the stream."""
        start, stop = round(start_s * self.rate), min(round(end_s * self.rate), self._end)
        if start < self._base:
            raise ValueError("window start already discarded")  # a bug in the caller, never input
        if stop <= start or not self._chunks:
            return np.zeros((self.channels or 1, 0), dtype=np.float32)
        joined = np.concatenate(self._chunks, axis=1) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [joined]
        return joined[:, start - self._base: stop - self._base]

    def discard_before(self, t_s: float) -> None:
        cut = min(round(t_s * self.rate), self._end) - self._base
        if cut <= 0:
            return
        joined = np.concatenate(self._chunks, axis=1) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [joined[:, cut:].copy()] if joined.shape[1] > cut else []
        self._base += cut

    def _append(self, samples: np.ndarray) -> None:
        self._chunks.append(samples)
        self._end += samples.shape[1]
        if self._end - self._base > self.max_buffer_samples:
            raise OverflowError(f"more than {self.max_buffer_samples} samples buffered")
