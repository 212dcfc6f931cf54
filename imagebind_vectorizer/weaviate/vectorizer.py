"""A small client of our server's Weaviate contract: `POST /vectorize` and `GET /meta`.

Requests are sent the way Weaviate's Go client sends them: a JSON body with no Content-Type
header, text as is, media as standard base64 of the file bytes, one list per input kind."""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.client import split_url
from imagebind_vectorizer.weaviate.errors import QueryError, WeaviateConnectError


def encode_item(kind: InputKind, item: bytes | str) -> str:
    """Text stays text; media bytes become standard padded base64 (what Weaviate stores)."""
    if kind is InputKind.TEXT:
        return item.decode("utf-8") if isinstance(item, bytes) else item
    if isinstance(item, str):
        return item  # already base64
    return base64.b64encode(item).decode("ascii")


class VectorizerClient:
    def __init__(self, url: str, timeout_s: float = 600.0) -> None:
        scheme, host, port = split_url(url)
        self.url = url.rstrip("/")
        self._scheme, self._host, self._port = scheme, host, port
        self.timeout_s = timeout_s
        self._meta: dict[str, Any] | None = None

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.timeout_s)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise WeaviateConnectError(f"cannot reach the vectorizer server at {self.url}: {exc}") from None
        finally:
            conn.close()

    def meta(self, refresh: bool = False) -> dict[str, Any]:
        if self._meta is None or refresh:
            status, body = self._request("GET", "/meta")
            try:
                meta = json.loads(body)
            except ValueError:
                meta = None
            if status != 200 or not isinstance(meta, dict):
                raise WeaviateConnectError(f"{self.url}/meta answered {status}, not a JSON object; "
                                           "is this an imagebind-vectorizer server?")
            self._meta = meta
        return self._meta

    def vectorize(self, items: Mapping[InputKind, Sequence[bytes | str]]) -> dict[InputKind, np.ndarray]:
        """One request with every kind's items; returns (n, D) float32 arrays in input order."""
        payload = {kind.facts.request_key: [encode_item(kind, item) for item in values]
                   for kind, values in items.items() if values}
        status, body = self._request("POST", "/vectorize", json.dumps(payload).encode())
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if status != 200 or not isinstance(answer, dict):
            message = answer.get("error") if isinstance(answer, dict) else body[:300].decode(errors="replace")
            raise QueryError(f"the vectorizer at {self.url} rejected the input (HTTP {status}): {message}")
        out: dict[InputKind, np.ndarray] = {}
        for kind, values in items.items():
            if not values:
                continue
            vectors = np.asarray(answer.get(kind.facts.response_key) or [], dtype=np.float32)
            if vectors.shape[0] != len(values):
                raise QueryError(f"the vectorizer returned {vectors.shape[0]} {kind.value} vectors for "
                                 f"{len(values)} inputs")
            out[kind] = vectors
        return out

    def embed(self, kind: InputKind, items: Sequence[bytes | str]) -> np.ndarray:
        return self.vectorize({kind: items})[kind]
