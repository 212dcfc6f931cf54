"""Kept for code written against earlier versions: the kinds and their facts live in `kinds`."""

from imagebind_vectorizer.kinds import ENCODERS, InputKind, parse_encoders

__all__ = ["ENCODERS", "InputKind", "parse_encoders"]
