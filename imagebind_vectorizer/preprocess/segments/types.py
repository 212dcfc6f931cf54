"""What a segment decoder yields: one window's model inputs, per input kind, or why it has none."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.modality import InputKind
from imagebind_vectorizer.preprocess.segments.windows import Window


@dataclass
class SegmentInput:
    """`rows[InputKind.AUDIO]` is the window's sound (an audio file, or a video's soundtrack), and
    `rows[InputKind.VIDEO]` its pictures, each exactly the recipe's input for a file of its own.
    A part that could not be computed has an entry in `errors` instead; a part that does not
    exist (a video without sound) has neither."""

    window: Window
    rows: dict[InputKind, torch.Tensor] = field(default_factory=dict)
    errors: dict[InputKind, InputError] = field(default_factory=dict)
