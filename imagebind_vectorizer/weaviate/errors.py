"""Errors of the Weaviate side: each carries a message written for the person at the terminal."""

from __future__ import annotations

from imagebind_vectorizer.errors import ImageBindError


class WeaviateSideError(ImageBindError):
    """Base class: a collection, connection, query or ingest problem explained in words."""


class WeaviateConnectError(WeaviateSideError):
    """Weaviate (or our vectorizer server) cannot be reached."""


class LocalServerError(WeaviateSideError):
    """A local Weaviate or vectorizer process could not be built, started or stopped."""


class QueryError(WeaviateSideError):
    """A search or classification request was invalid or failed."""


class SchemaError(WeaviateSideError):
    """A collection definition (properties, named vectors, weights) is invalid."""
