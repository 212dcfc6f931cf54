"""The project's exception types. Transports map them to their own status codes."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """A library exception's first line (at most 300 characters), for messages users read."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class ImageBindError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(ImageBindError):
    """A bad input: undecodable, over a limit, or of the wrong kind.

    `field` is the input kind (e.g. "images") and `index` the item's position in its list, so a
    client can tell exactly which item was rejected. `reason` is a short machine-readable tag used
    as a metrics label (e.g. "decode", "too_large").
    """

    def __init__(self, message: str, *, reason: str = "invalid", field: str | None = None,
                 index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.field = field
        self.index = index

    def located(self, field: str | None, index: int | None) -> InputError:
        """The same error, tagged with where it happened (keeps an existing location)."""
        return InputError(self.message, reason=self.reason,
                          field=self.field if self.field is not None else field,
                          index=self.index if self.index is not None else index)

    def __str__(self) -> str:
        if self.field is not None and self.index is not None:
            return f"{self.field}[{self.index}]: {self.message}"
        if self.field is not None:
            return f"{self.field}: {self.message}"
        return self.message


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
