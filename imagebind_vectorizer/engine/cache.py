"""A size-bounded LRU of finished vectors, keyed by what determines them."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np


def content_key(kind: str, item: bytes | str, model_id: str, variant: str) -> bytes:
    """(kind, sha256 of the bytes, model id, preprocessing/scaling variant) as one digest."""
    data = item.encode("utf-8") if isinstance(item, str) else item
    h = hashlib.sha256()
    for part in (kind, model_id, variant):
        h.update(part.encode())
        h.update(b"\0")
    h.update(hashlib.sha256(data).digest())
    return h.digest()


class VectorCache:
    """Used only from the event loop thread, so it needs no lock."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> np.ndarray | None:
        vector = self._entries.get(key)
        if vector is not None:
            self._entries.move_to_end(key)
        return vector

    def put(self, key: bytes, vector: np.ndarray) -> None:
        if self.max_entries <= 0:
            return
        vector = vector.copy()
        vector.setflags(write=False)  # shared between responses: never mutated
        self._entries[key] = vector
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
