"""Inserting built objects: which already exist, batches bounded in bytes, and every object Weaviate
rejects reported with its message (which relays our server's), never dropped."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from imagebind_vectorizer.weaviate.client import one_line
from imagebind_vectorizer.weaviate.ingest.objects import BuiltObject

if TYPE_CHECKING:
    from weaviate.collections import Collection

#: Weaviate's default gRPC message limit is 104,858,000 bytes; stay well below it per call.
DEFAULT_MAX_BATCH_BYTES = 48 * 1024 * 1024


def existing_ids(collection: Collection, uuids: Sequence[str], vectors: Sequence[str] = ()) -> set[str]:
    """The uuids already stored *with* every one of `vectors` (Weaviate keeps an object whose
    vector-index insert failed, without that vector; such an object counts as missing)."""
    from weaviate.classes.query import Filter

    if not uuids:
        return set()
    result = collection.query.fetch_objects(filters=Filter.by_id().contains_any(list(uuids)), limit=len(uuids),
                                            return_properties=["sha256"], include_vector=bool(vectors))
    return {str(o.uuid) for o in result.objects
            if all((o.vector or {}).get(name) for name in vectors)}


def insert(collection: Collection, batch: list[BuiltObject]) -> dict[int, str]:
    """Insert; index -> error message (one line, bounded) for each object Weaviate rejected."""
    import weaviate
    from weaviate.classes.data import DataObject

    objects = [DataObject(properties=b.properties, uuid=b.uuid) for b in batch]
    try:
        _drop_payload_logs()
        result = collection.data.insert_many(objects)
    except weaviate.exceptions.WeaviateInsertManyAllFailedError as exc:
        messages = _all_failed_reasons(str(exc))
        if len(batch) == 1 or len(messages) == 1:
            return dict.fromkeys(range(len(batch)), messages[0])
        # The client keeps only the set of messages when every object failed; one at a time maps them.
        errors: dict[int, str] = {}
        for index, built in enumerate(batch):
            for message in insert(collection, [built]).values():
                errors[index] = message
        return errors
    return {index: one_line(error.message) for index, error in result.errors.items()}


class _PayloadRecords(logging.Filter):
    """Drops weaviate-client's record of a batch's failed objects: it holds every failed object
    whole (base64 media: one line of hundreds of kilobytes), and we report each failure ourselves,
    once, in one bounded line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, dict) and "errors" in record.msg)


_PAYLOAD_FILTER = _PayloadRecords()


def _drop_payload_logs() -> None:
    # A filter, not a level: weaviate-client sets its logger's level from WEAVIATE_LOG_LEVEL when its
    # logger module is first imported, which may happen during the insert itself. Installed once and
    # kept (addFilter ignores a filter it already has), so concurrent inserts need no bookkeeping.
    logging.getLogger("weaviate-client").addFilter(_PAYLOAD_FILTER)


def _all_failed_reasons(text: str) -> list[str]:
    """The distinct messages in the client's WeaviateInsertManyAllFailedError, one per line."""
    marker = "Here is the set of all errors:"
    if marker not in text:
        return [one_line(text)]
    return [one_line(line) for line in text.split(marker, 1)[1].strip().splitlines() if line.strip()] or \
        [one_line(text)]


def explain(reason: str) -> str:
    """Weaviate's message, plus what to do when the cause is clear."""
    lowered = reason.lower()
    if "vectorize" in lowered and ("connection refused" in lowered or "no such host" in lowered
                                   or "connect:" in lowered):
        return (reason + " -- Weaviate cannot reach its vectorizer (BIND_INFERENCE_API); start the "
                "imagebind-vectorizer server again and rerun: objects already stored are skipped")
    if "nil-vector" in lowered:
        return reason + " -- the object holds none of that vector's fields; Weaviate stored it without the vector"
    if "deadline" in lowered or "timeout" in lowered:
        return reason + " -- raise MODULES_CLIENT_TIMEOUT in Weaviate or --timeout here, or use a smaller --batch-size"
    return reason


def split(objects: list[BuiltObject], max_bytes: int) -> Iterator[list[BuiltObject]]:
    batch: list[BuiltObject] = []
    size = 0
    for obj in objects:
        if batch and size + obj.payload_bytes > max_bytes:
            yield batch
            batch, size = [], 0
        batch.append(obj)
        size += obj.payload_bytes
    if batch:
        yield batch
