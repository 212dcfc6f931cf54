"""`iter_segments`: the one entry point to the window decoders of long audio and video."""

from __future__ import annotations

from collections.abc import Iterator

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.moments import SourceLimits, WindowSpec
from imagebind_vectorizer.preprocess.profiles import PreprocessOptions
from imagebind_vectorizer.preprocess.segments.audio import audio_windows
from imagebind_vectorizer.preprocess.segments.source import Source
from imagebind_vectorizer.preprocess.segments.types import SegmentInput
from imagebind_vectorizer.preprocess.segments.video import video_windows

#: the kinds a long file can be segmented as
SEGMENTED_KINDS = (InputKind.AUDIO, InputKind.VIDEO)


def iter_segments(source: Source, kind: InputKind, spec: WindowSpec, options: PreprocessOptions,
                  limits: SourceLimits | None = None) -> Iterator[SegmentInput]:
    """The windows of an audio or video file, in order. Raises InputError for a file that cannot
    be segmented at all (before the first window) or whose rest is lost (after the last good one)."""
    limits = limits or SourceLimits()
    if kind is InputKind.AUDIO:
        decoder = audio_windows(source, spec, options, limits)
    elif kind is InputKind.VIDEO:
        decoder = video_windows(source, spec, options, limits)
    else:
        raise InputError(f"only audio and video can be segmented, not {kind.value}", reason="invalid")
    try:
        yield from decoder
    except InputError:
        raise
    except (MemoryError, RecursionError) as exc:
        raise InputError(f"the {kind.value} is too complex to decode: {type(exc).__name__}",
                         reason="too_large") from exc
    except Exception as exc:
        raise InputError(f"cannot decode the {kind.value}: {type(exc).__name__}: {exc}", reason="decode") from exc


__all__ = ["SEGMENTED_KINDS", "Source", "iter_segments"]
