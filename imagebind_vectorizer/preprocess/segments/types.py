"""What a segment decoder yields: one window's model inputs, per input kind, or why it has none
(once embedded, a window becomes an `imagebind_vectorizer.moments.Segment`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.moments import Window

if TYPE_CHECKING:
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

