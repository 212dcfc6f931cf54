"""A small client of our server's Weaviate contract: `POST /vectorize` and `GET /meta`.

Requests are sent the way Weaviate's Go client sends them: a JSON body with no Content-Type
header, text as is, media as standard base64 of the file bytes, one list per input kind."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.client import split_url
from imagebind_vectorizer.weaviate.errors import QueryError, WeaviateConnectError

if TYPE_CHECKING:
    from imagebind_vectorizer.settings import ConnectionSettings


def encode_item(kind: InputKind, item: bytes | str) -> str:
    """Text stays text; media bytes become standard padded base64 (what Weaviate stores)."""
    if kind is InputKind.TEXT:
        return item.decode("utf-8") if isinstance(item, bytes) else item
    if isinstance(item, str):
        return item  # already base64
    return base64.b64encode(item).decode("ascii")


class VectorizerClient:
    """Our server over HTTP. `api_key` (or the password of a `http://user:KEY@host` URL, as in
    Weaviate's BIND_INFERENCE_API) is sent as `Authorization: Bearer`; `ca_file` verifies an https
    server signed by a private CA (default: the system's CAs). Messages show the URL without the key."""

    def __init__(self, url: str, timeout_s: float = 600.0, *, api_key: str | None = None,
                 ca_file: str | None = None) -> None:
        scheme, host, port = split_url(url)
        parts = urlsplit(url if "://" in url else "http://" + url)
        self.url = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}{parts.path.rstrip('/')}"
        self._scheme, self._host, self._port, self._prefix = scheme, host, port, parts.path.rstrip("/")
        self._api_key = api_key or (unquote(parts.password) if parts.password else None)
        self._ssl = ssl.create_default_context(cafile=ca_file) if scheme == "https" else None
        if ca_file and scheme != "https":
            raise WeaviateConnectError(f"a CA file was given but {self.url} is not https://")
        self.timeout_s = timeout_s
        self._meta: dict[str, Any] | None = None

    @classmethod
    def from_connection(cls, connection: ConnectionSettings) -> VectorizerClient:
        """From --server, --server-api-key, --server-ca-file and --timeout (or their variables)."""
        return cls(connection.server, timeout_s=connection.timeout, api_key=connection.server_api_key,
                   ca_file=connection.server_ca_file)

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self._ssl is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout_s, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_s)
        try:
            conn.putrequest(method, self._prefix + path, skip_accept_encoding=True)
            if self._api_key:
                conn.putheader("Authorization", f"Bearer {self._api_key}")
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            status, data = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise WeaviateConnectError(f"cannot reach the vectorizer server at {self.url}: {exc}") from None
        finally:
            conn.close()
        if status == 401:
            hint = "send a key (--server-api-key / IMAGEBIND_SERVER_API_KEY)" if not self._api_key \
                else "the key was refused"
            raise WeaviateConnectError(f"the vectorizer server at {self.url} requires an API key: {hint}")
        return status, data

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
