"""Long audio and video as timed segments: windows cut from one streaming decode, each turned into
exactly the model input a file of its own would give (imagebind_vectorizer/moments.py: where the
windows lie; audio.py and video.py: the decoders; decode.py: `iter_segments`). The decoders yield
picklable `SegmentInput`s, so they can run in a worker process and hand windows back one at a time.
Importing the package is light; the decoders load with the first `iter_segments`."""

from __future__ import annotations

from typing import Any

from imagebind_vectorizer.moments import Segment, SourceLimits, Window, WindowSpec
from imagebind_vectorizer.preprocess.segments.types import SegmentInput


def __getattr__(name: str) -> Any:
    if name in ("iter_segments", "SEGMENTED_KINDS", "Source"):
        from imagebind_vectorizer.preprocess.segments import decode

        return getattr(decode, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SEGMENTED_KINDS", "Segment", "SegmentInput", "Source", "SourceLimits", "Window", "WindowSpec",
           "iter_segments"]
