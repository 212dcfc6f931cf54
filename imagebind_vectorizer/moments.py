"""The vocabulary of moment search that every layer shares: where the windows of a long recording
lie (fixed-length windows every `seconds - overlap`), the limits on a file that is segmented, and a
`Segment` (a window and its vectors). Light (settings, the Weaviate side and clients read it): no
torch, no decoders; the decoders are in preprocess/segments.

A window is emitted while it holds media that no earlier window covered: the last one ends at the
end of the file and may be shorter (a tail under MIN_TAIL_SECONDS is dropped: too short to say
anything, and the recipe would mostly pad it). Times are seconds on the file's own clock, the first
sample or frame being 0."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind

if TYPE_CHECKING:
    import numpy as np

#: the defaults: at least four hours and 4 GiB, as the issue asks of a long recording
DEFAULT_MAX_SECONDS = 4 * 3600.0
DEFAULT_MAX_BYTES = 4 * 1024**3
#: a window shorter than this at the end of a file is not emitted
MIN_TAIL_SECONDS = 0.5
#: ImageBind's clips are 2 s long: a shorter window would be mostly padding
MIN_WINDOW_SECONDS = 2.0
#: a window is one item for the model; the single-item duration limit is the natural bound
MAX_WINDOW_SECONDS = 600.0


@dataclass(frozen=True)
class WindowSpec:
    """How a long file is cut: `seconds` per window, `overlap` seconds shared by neighbours."""

    seconds: float = 10.0
    overlap: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.seconds, int | float) and math.isfinite(self.seconds)):
            problems.append(f"window length {self.seconds!r} is not a number")
        elif not MIN_WINDOW_SECONDS <= self.seconds <= MAX_WINDOW_SECONDS:
            problems.append(f"window length {self.seconds:g} s is outside [{MIN_WINDOW_SECONDS:g}, "
                            f"{MAX_WINDOW_SECONDS:g}] s")
        if not (isinstance(self.overlap, int | float) and math.isfinite(self.overlap)):
            problems.append(f"window overlap {self.overlap!r} is not a number")
        elif self.overlap < 0 or (not problems and self.overlap > self.seconds / 2):
            problems.append(f"window overlap {self.overlap:g} s must be between 0 and half the window "
                            f"({self.seconds / 2:g} s)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def stride(self) -> float:
        return self.seconds - self.overlap

    def start(self, index: int) -> float:
        return index * self.stride

    def first_overlapping(self, t: float) -> int:
        """The first window whose span [start, start + seconds) contains or follows time t."""
        return max(0, math.floor((t - self.seconds) / self.stride) + 1)

    def window(self, index: int, duration: float | None = None) -> Window | None:
        """Window `index` of a file of `duration` seconds (None: not known yet, assume it goes on),
        or None if the file has no such window."""
        start = self.start(index)
        if duration is not None:
            if index > 0 and self.start(index - 1) + self.seconds >= duration:
                return None  # the previous window already reached the end
            if start >= duration or (index > 0 and duration - start < MIN_TAIL_SECONDS):
                return None
            return Window(index, start, min(start + self.seconds, duration))
        return Window(index, start, start + self.seconds)

    def windows(self, duration: float) -> list[Window]:
        out = []
        while (w := self.window(len(out), duration)) is not None:
            out.append(w)
        return out

    def key(self) -> str:
        """A short stable text naming these settings (part of segment object UUIDs)."""
        return f"w{self.seconds:g}o{self.overlap:g}"

    @classmethod
    def parse(cls, text: str) -> WindowSpec:
        """`10`, `10s`, `10s,2s` or `10,2` -> WindowSpec(10, 2)."""
        parts = [p.strip().lower().removesuffix("s") for p in text.split(",")]
        if not 1 <= len(parts) <= 2 or not all(parts):
            raise ValueError(f"segments {text!r}: expected SECONDS[,OVERLAP], e.g. 10s or 10s,2s")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"segments {text!r}: expected SECONDS[,OVERLAP], e.g. 10s or 10s,2s") from None
        return cls(*values)


@dataclass(frozen=True)
class Window:
    index: int
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def settings_digest(*parts: object) -> str:
    """A 16-hex-digit digest of what changes a segment's vectors (window spec, profile, model)."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SourceLimits:
    """How long and how large a segmented file may be."""

    max_seconds: float = DEFAULT_MAX_SECONDS
    max_bytes: int = DEFAULT_MAX_BYTES

    def check_seconds(self, seconds: float | None, *, decoded: bool = False) -> None:
        if seconds is None:
            return
        # A header may round the duration up a little; decoding past the limit is the real test.
        if seconds > self.max_seconds + (0.0 if decoded else 1.0):
            what = "decodes to more than" if decoded else f"is {seconds:.1f} s long, over"
            raise InputError(f"the file {what} the limit of {self.max_seconds:g} s", reason="too_long")

    def check_bytes(self, size: int) -> None:
        if size > self.max_bytes:
            raise InputError(f"the file is {size} bytes, over the limit of {self.max_bytes}", reason="too_large")


@dataclass
class Segment:
    """A window of a long file and its vectors: `vectors[InputKind.VIDEO]` what is seen,
    `vectors[InputKind.AUDIO]` what is heard. A part that failed has an entry in `errors`."""

    window: Window
    vectors: dict[InputKind, np.ndarray] = field(default_factory=dict)
    errors: dict[InputKind, InputError] = field(default_factory=dict)

    @property
    def index(self) -> int:
        return self.window.index

    @property
    def start(self) -> float:
        return self.window.start

    @property
    def end(self) -> float:
        return self.window.end
