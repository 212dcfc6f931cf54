"""The project's exception types. Transports map them to their own status codes."""

from __future__ import annotations

import re

from imagebind_vectorizer.kinds import InputKind


def first_line(exc: BaseException) -> str:
    """What a library exception says went wrong, as a short phrase for messages users read: FFmpeg's
    error text without its errno and file name, running out of memory in our words (not numpy's
    "Unable to allocate 43.7 TiB for an array with shape ..."), otherwise the first line without
    object addresses, at most 200 characters."""
    if isinstance(exc, MemoryError) or "Unable to allocate" in str(exc) or "can't allocate memory" in str(exc):
        return "it needs more memory than a decoder may use"
    strerror = getattr(exc, "strerror", None)  # PyAV's FFmpegError and OSError carry the bare reason
    text = (strerror if isinstance(strerror, str) and strerror else str(exc)).strip() or type(exc).__name__
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "<...>", text.splitlines()[0])[:200]


class ImageBindError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(ImageBindError):
    """A bad input: undecodable, over a limit, or of the wrong kind.

    Where it happened, in the engine's terms: `kind` (the input kind) and `index` (the item's
    position among that kind's items). A transport names the place in its own vocabulary with
    `field` (HTTP: the request key, "images"; gRPC: "items") and, where its positions differ,
    its own index; without a field the kind's name is used ("image[1]"). `reason` is a short
    machine-readable tag used as a metrics label (e.g. "decode", "too_large").
    """

    def __init__(self, message: str, *, reason: str = "invalid", kind: InputKind | None = None,
                 field: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.kind = kind
        self._field = field
        self.index = index

    @property
    def field(self) -> str | None:
        if self._field is not None:
            return self._field
        return self.kind.value if self.kind is not None else None

    def __reduce__(self) -> tuple:
        # Pickled with its keywords, so an error raised in a worker process arrives whole.
        return _input_error, (self.message, self.reason, self.kind, self._field, self.index)

    def at(self, kind: InputKind, index: int | None) -> InputError:
        """The same error, tagged with the kind and index it happened at (keeps an existing index)."""
        return InputError(self.message, reason=self.reason, kind=kind, field=self._field,
                          index=self.index if self.index is not None else index)

    def named(self, field: str, index: int | None) -> InputError:
        """The same error, placed in a transport's vocabulary (its field name and item index)."""
        return InputError(self.message, reason=self.reason, kind=self.kind, field=field, index=index)

    def __str__(self) -> str:
        if self.field is not None and self.index is not None:
            return f"{self.field}[{self.index}]: {self.message}"
        if self.field is not None:
            return f"{self.field}: {self.message}"
        return self.message


def _input_error(message: str, reason: str, kind: InputKind | None, field: str | None,
                 index: int | None) -> InputError:
    return InputError(message, reason=reason, kind=kind, field=field, index=index)


class CheckpointError(ImageBindError):
    """The checkpoint cannot be found, downloaded, verified or mapped onto the model."""


class ConfigError(ImageBindError):
    """Settings or an architecture config that cannot work."""


class OverloadedError(ImageBindError):
    """The engine's queue is full; the caller should retry later (HTTP 429 / RESOURCE_EXHAUSTED)."""


class NotReadyError(ImageBindError):
    """The model is not loaded yet, or the server is shutting down (HTTP 503 / UNAVAILABLE)."""


class DeadlineExceededError(ImageBindError):
    """The caller's deadline passed before its items were computed."""
