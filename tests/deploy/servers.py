"""Loopback HTTP servers for the tests: a fixed-status endpoint and a counting file server."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@contextlib.contextmanager
def _running(server: ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def serve_status(status: int | None) -> Iterator[int]:
    """A port on 127.0.0.1 whose every GET/HEAD answers `status`; None: a port nothing listens on."""
    if status is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield port
        return

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    with _running(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield port


@contextlib.contextmanager
def serve_files(directory: Path, requests: list[str]) -> Iterator[int]:
    """Serve `directory` on 127.0.0.1; every request path is appended to `requests`."""

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    with _running(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield port
