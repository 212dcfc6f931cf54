"""ImageBind as a vectorizer: model, preprocessing, serving and Weaviate integration.

    from imagebind_vectorizer import Embedder, Settings
    embedder = Embedder(Settings.load(checkpoint="imagebind_huge.pth", modalities="text,vision"))

Importing the package is light: `Embedder` (and with it torch and the model) loads on first use."""

from typing import Any

from imagebind_vectorizer.errors import CheckpointError, ImageBindError, InputError, OverloadedError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.version import __version__


def __getattr__(name: str) -> Any:
    if name == "Embedder":
        from imagebind_vectorizer.runtime.embedder import Embedder

        return Embedder
    if name == "Settings":
        from imagebind_vectorizer.settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "Embedder",
    "ImageBindError",
    "InputError",
    "InputKind",
    "OverloadedError",
    "Settings",
    "__version__",
]
