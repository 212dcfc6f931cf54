"""Opening a long file for segmenting, and the limits on it.

A source is a path or a seekable binary file object (the gRPC service spools an upload to a
temporary file): a video's frame count may have to be learnt from a first pass over its packets,
and MP4 files keep their index at the end, so the decoder must be able to seek."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import av

from imagebind_vectorizer.errors import InputError, first_line
from imagebind_vectorizer.preprocess.audio import wav_truncation

Source = str | os.PathLike[str] | BinaryIO

def source_size(source: Source) -> int:
    if isinstance(source, str | os.PathLike):
        return Path(source).stat().st_size
    position = source.tell()
    size = source.seek(0, os.SEEK_END)
    source.seek(position)
    return size


@contextlib.contextmanager
def open_container(source: Source, what: str) -> Iterator[av.container.InputContainer]:
    size = source_size(source)
    if size == 0:
        raise InputError(f"empty {what} file", reason="empty")
    if not isinstance(source, str | os.PathLike):
        source.seek(0)
    try:
        container = av.open(os.fspath(source) if isinstance(source, str | os.PathLike) else source, mode="r")
    except Exception as exc:
        raise InputError(f"not a{'n' if what[0] in 'aeiou' else ''} {what} file FFmpeg can read: "
                         f"{first_line(exc)}", reason="decode") from exc
    with container:
        yield container


def stream_seconds(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """The duration the header announces, if any."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def truncation(source: Source) -> str | None:
    """Why the file is shorter than its header says, where the format tells (WAV), or None."""
    return wav_truncation(_read_head(source, 64 * 1024), source_size(source))


def _read_head(source: Source, count: int) -> bytes:
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            return handle.read(count)
    position = source.tell()
    try:
        source.seek(0)
        return source.read(count)
    finally:
        source.seek(position)
