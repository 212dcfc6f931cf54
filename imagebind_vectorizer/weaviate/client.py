"""Connecting to Weaviate (weaviate-client v4) and turning its exceptions into plain messages.

Where Weaviate and our server are, and how long calls may take, is `settings.ConnectionSettings`
(flags, environment variables and defaults declared once; README, "Command line", has the table)."""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from imagebind_vectorizer.settings import ConnectionSettings, add_arguments
from imagebind_vectorizer.weaviate.errors import WeaviateConnectError, WeaviateSideError

if TYPE_CHECKING:
    import weaviate

_DEFAULTS = ConnectionSettings()


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; the port defaults to 80/443."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WeaviateConnectError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8080")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WeaviateConnectError(f"{url!r}: {exc}") from None
    return parts.scheme, parts.hostname, port


def connect(url: str = _DEFAULTS.weaviate_url, *, grpc_port: int | None = None, api_key: str | None = None,
            timeout_s: float = _DEFAULTS.timeout) -> weaviate.WeaviateClient:
    """A connected client. `timeout_s` bounds queries and inserts: Weaviate vectorizes inserted
    objects while the call waits, and video on a CPU can take a while."""
    import weaviate
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout

    scheme, host, port = split_url(url)
    grpc = grpc_port or _DEFAULTS.weaviate_grpc_port
    try:
        # skip_init_checks: the client's init checks include a PyPI version lookup, which stalls
        # on machines without internet access; a wrong gRPC port shows up on first use instead.
        client = weaviate.connect_to_custom(
            http_host=host, http_port=port, http_secure=scheme == "https",
            grpc_host=host, grpc_port=grpc, grpc_secure=scheme == "https",
            auth_credentials=Auth.api_key(api_key) if api_key else None,
            additional_config=AdditionalConfig(timeout=Timeout(init=30, query=timeout_s, insert=timeout_s)),
            skip_init_checks=True,
        )
    except weaviate.exceptions.WeaviateBaseError as exc:
        raise WeaviateConnectError(f"cannot connect to Weaviate at {url}: {connect_reason(exc)} -- is it running "
                                   "there? (--weaviate-url / WEAVIATE_URL say where)") from None
    try:
        ready = client.is_ready()
    except weaviate.exceptions.WeaviateBaseError:
        ready = False
    if not ready:
        client.close()
        raise WeaviateConnectError(f"Weaviate at {url} is not ready (GET /v1/.well-known/ready failed)")
    return client


def connect_reason(exc: BaseException) -> str:
    """Why a connection failed, in words. weaviate-client's own message often ends in an empty
    "Details: ." while the reason ("[Errno 111] Connection refused") sits on an exception it wraps."""
    reasons: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = one_line(str(current))
        text = re.sub(r"^(Could not connect to Weaviate:\s*)?(Connection to Weaviate failed\.)?\s*(Details:\s*)?",
                      "", text).strip().rstrip(".").strip()
        if text and not any(text in known for known in reasons):
            reasons.append(text)
        current = current.__cause__ or current.__context__
    return "; ".join(reasons[:2]) or "no reason given"


def one_line(text: str, limit: int = 600) -> str:
    """Weaviate's client wraps errors in long multi-line texts: all of it on one line, cut at
    `limit` (unlike errors.first_line, which keeps only a library message's first line)."""
    text = " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    return text if len(text) <= limit else text[:limit] + "..."


@contextlib.contextmanager
def weaviate_errors(action: str) -> Iterator[None]:
    """Re-raise any weaviate-client exception as a WeaviateSideError saying what we were doing."""
    import weaviate

    try:
        yield
    except weaviate.exceptions.WeaviateBaseError as exc:
        message = one_line(str(exc))
        if "StatusCode.UNAVAILABLE" in message or "failed to connect to all addresses" in message:
            message += " -- is Weaviate's gRPC port right? (--weaviate-grpc-port)"
        raise WeaviateSideError(f"{action}: {message}") from None


#: the ConnectionSettings fields that say how to reach our vectorizer server
SERVER_NAMES = ("server", "server_api_key", "server_ca_file")


def add_connection_arguments(parser: argparse.ArgumentParser, *, server: bool = False, segments: bool = False) -> None:
    """--weaviate-url, --weaviate-grpc-port, --weaviate-api-key, --timeout (and --server with its key and
    CA, and --server-grpc for segmenting)."""
    names = ["weaviate_url", "weaviate_grpc_port", "weaviate_api_key", "timeout"]
    names += (list(SERVER_NAMES) if server or segments else []) + (["server_grpc"] if segments else [])
    add_arguments(parser, settings=ConnectionSettings, names=names)


def add_server_argument(parser: argparse.ArgumentParser) -> None:
    """--server (with its key and CA) and --timeout, for commands that only talk to our server."""
    add_arguments(parser, settings=ConnectionSettings, names=(*SERVER_NAMES, "timeout"))


def connect_from_args(args: argparse.Namespace) -> weaviate.WeaviateClient:
    settings = ConnectionSettings.load(args)
    return connect(settings.weaviate_url, grpc_port=settings.weaviate_grpc_port, api_key=settings.weaviate_api_key,
                   timeout_s=settings.timeout)
