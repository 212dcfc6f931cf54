"""Connecting to Weaviate (weaviate-client v4) and turning its exceptions into plain messages.

Defaults (each also read from the environment):

| what | flag | environment | default |
|---|---|---|---|
| Weaviate REST | `--weaviate-url` | `WEAVIATE_URL` | `http://127.0.0.1:8080` (Weaviate's own default) |
| Weaviate gRPC | `--weaviate-grpc-port` | `WEAVIATE_GRPC_PORT` | `50051` (Weaviate's own default) |
| Weaviate API key | `--weaviate-api-key` | `WEAVIATE_API_KEY` | none (anonymous access) |
| our vectorizer | `--server` | `IMAGEBIND_SERVER_URL` | `http://127.0.0.1:8011` |

Our server's own `serve` default port is 8080 (inside Docker it has the container to itself); when
Weaviate and the vectorizer run on one host, start the vectorizer with `serve --port 8011` and set
Weaviate's `BIND_INFERENCE_API=http://127.0.0.1:8011`, which is what `--server` assumes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from imagebind_vectorizer.weaviate.errors import WeaviateConnectError, WeaviateSideError

if TYPE_CHECKING:
    import weaviate

DEFAULT_WEAVIATE_URL = "http://127.0.0.1:8080"
DEFAULT_GRPC_PORT = 50051
DEFAULT_SERVER_URL = "http://127.0.0.1:8011"
DEFAULT_TIMEOUT_S = 600.0


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


def connect(url: str = DEFAULT_WEAVIATE_URL, *, grpc_port: int | None = None, api_key: str | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> weaviate.WeaviateClient:
    """A connected client. `timeout_s` bounds queries and inserts: Weaviate vectorizes inserted
    objects while the call waits, and video on a CPU can take a while."""
    import weaviate
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout

    scheme, host, port = split_url(url)
    grpc = grpc_port or DEFAULT_GRPC_PORT
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
        raise WeaviateConnectError(f"cannot connect to Weaviate at {url}: {first_line(str(exc))}") from None
    try:
        ready = client.is_ready()
    except weaviate.exceptions.WeaviateBaseError:
        ready = False
    if not ready:
        client.close()
        raise WeaviateConnectError(f"Weaviate at {url} is not ready (GET /v1/.well-known/ready failed)")
    return client


def first_line(text: str, limit: int = 600) -> str:
    """Weaviate's client wraps errors in long multi-line texts; keep the informative part."""
    text = " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    return text if len(text) <= limit else text[:limit] + "..."


@contextlib.contextmanager
def weaviate_errors(action: str) -> Iterator[None]:
    """Re-raise any weaviate-client exception as a WeaviateSideError saying what we were doing."""
    import weaviate

    try:
        yield
    except weaviate.exceptions.WeaviateBaseError as exc:
        message = first_line(str(exc))
        if "StatusCode.UNAVAILABLE" in message or "failed to connect to all addresses" in message:
            message += " -- is Weaviate's gRPC port right? (--weaviate-grpc-port)"
        raise WeaviateSideError(f"{action}: {message}") from None


def add_connection_arguments(parser: argparse.ArgumentParser, *, server: bool = False) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--weaviate-url", default=os.environ.get("WEAVIATE_URL", DEFAULT_WEAVIATE_URL),
                       help=f"Weaviate REST URL [env WEAVIATE_URL, default {DEFAULT_WEAVIATE_URL}]")
    group.add_argument("--weaviate-grpc-port", type=int,
                       default=int(os.environ.get("WEAVIATE_GRPC_PORT", DEFAULT_GRPC_PORT)),
                       help=f"Weaviate gRPC port [env WEAVIATE_GRPC_PORT, default {DEFAULT_GRPC_PORT}]")
    group.add_argument("--weaviate-api-key", default=os.environ.get("WEAVIATE_API_KEY"),
                       help="Weaviate API key [env WEAVIATE_API_KEY; default: anonymous]")
    group.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                       help=f"seconds a query or insert batch may take [default {DEFAULT_TIMEOUT_S:.0f}]")
    if server:
        add_server_argument(group)


def add_server_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--server", default=os.environ.get("IMAGEBIND_SERVER_URL", DEFAULT_SERVER_URL),
                        help="our vectorizer server, used to embed composed queries and classification inputs; "
                             "it must serve the same model as the one Weaviate uses "
                             f"[env IMAGEBIND_SERVER_URL, default {DEFAULT_SERVER_URL}]")


def connect_from_args(args: argparse.Namespace) -> weaviate.WeaviateClient:
    return connect(args.weaviate_url, grpc_port=args.weaviate_grpc_port, api_key=args.weaviate_api_key,
                   timeout_s=args.timeout)
