"""Clip timing of pytorchvideo's ConstantClipsPerVideoSampler, in exact fractions.

The commit ImageBind pins spaces `clips` starts by max_start / (clips - 1), so the last clip ends
at the end of the input; pytorchvideo 0.1.5 (Weaviate's container) divides by `clips`."""

from __future__ import annotations

from fractions import Fraction


def clip_bounds(duration: float, clip_seconds: int, clips: int, *,
                minus_one: bool) -> list[tuple[Fraction, Fraction]]:
    max_start = Fraction(max(duration - clip_seconds, 0))
    step = max_start / (max(clips - 1, 1) if minus_one else clips)
    return [(step * k, step * k + clip_seconds) for k in range(clips)]
