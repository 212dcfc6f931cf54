"""ImageBind as a vectorizer: model, preprocessing, serving and Weaviate integration."""

from imagebind_vectorizer.errors import CheckpointError, ImageBindError, InputError, OverloadedError
from imagebind_vectorizer.kinds import InputKind

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ImageBindError",
    "InputError",
    "InputKind",
    "OverloadedError",
    "__version__",
]
