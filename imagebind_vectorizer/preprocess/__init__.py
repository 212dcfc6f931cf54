"""Bytes -> model-ready tensors, one module per input kind.

Every preprocessor returns a float tensor whose first axis is the item's rows (1 for an image or a
text, 3 audio clips, 15 video views: `KindFacts.rows_per_item`) and raises `InputError` for bad input.
Importing the package is light (settings read `profiles`); the decoders, and torch, load with the
first use of `preprocess` or of a kind's module."""

from __future__ import annotations

from typing import Any

from imagebind_vectorizer.preprocess.profiles import DepthOptions, Limits, PreprocessOptions, Profile


def __getattr__(name: str) -> Any:
    if name in ("preprocess", "check_item", "PREPROCESSORS"):
        from imagebind_vectorizer.preprocess import dispatch

        return getattr(dispatch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PREPROCESSORS", "DepthOptions", "Limits", "PreprocessOptions", "Profile", "check_item", "preprocess"]
