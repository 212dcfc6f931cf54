"""What segmenting yields: a window's model inputs (`SegmentInput`, from the decoders) and, once
embedded, its vectors (`Segment`, what the Python API, the engine and the transports hand out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess.segments.windows import Window

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class SegmentInput:
    """`rows[InputKind.AUDIO]` is the window's sound (an audio file, or a video's soundtrack), and
    `rows[InputKind.VIDEO]` its pictures, each exactly the recipe's input for a file of its own.
    A part that could not be computed has an entry in `errors` instead; a part that does not
    exist (a video without sound) has neither."""

    window: Window
    rows: dict[InputKind, torch.Tensor] = field(default_factory=dict)
    errors: dict[InputKind, InputError] = field(default_factory=dict)


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
