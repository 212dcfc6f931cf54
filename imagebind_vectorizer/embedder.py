"""Kept for code written against earlier versions: the Python API lives in `runtime.embedder`
(`from imagebind_vectorizer import Embedder` also works)."""

from imagebind_vectorizer.runtime.embedder import DEFAULT_CHUNK, Embedder

__all__ = ["DEFAULT_CHUNK", "Embedder"]
