"""TLS for both transports from PEM files that may change on disk (a renewed certificate, a rotated
Kubernetes Secret): new connections get the new certificate without a restart.

The files are looked at when a connection is set up (watch.py: at most once a second): HTTP
through the TLS server-name callback (OpenSSL calls it on every handshake, with or without SNI),
which switches the connection to the newest context; gRPC through grpcio's dynamic credentials,
whose fetcher runs on each handshake. A set of files that does not load (a key that does not match
its certificate while a rotation is half-written) keeps the previous one and is retried.

Client certificates (mTLS) are verified against `client_ca` on the transports named in
`verify_clients`. Stock Weaviate presents no client certificate, so verifying HTTP clients locks it
out; the default deployment verifies gRPC clients only when a CA is given."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from imagebind_vectorizer.errors import ConfigError
from imagebind_vectorizer.server.watch import FileState, Throttle, file_states

log = logging.getLogger(__name__)

TRANSPORTS = ("http", "grpc")


@dataclass(frozen=True)
class TlsMaterial:
    """One consistent read of the files: PEM bytes plus the stat identity they were read at."""

    cert: bytes
    key: bytes
    client_ca: bytes | None
    state: tuple[FileState, ...]


class ServerTls:
    """The server's certificate, key and optional client CA, kept current from their files."""

    def __init__(self, cert_file: str | Path, key_file: str | Path, client_ca_file: str | Path | None = None, *,
                 verify_clients: frozenset[str] = frozenset(TRANSPORTS),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cert_file, self.key_file = Path(cert_file), Path(key_file)
        self.client_ca_file = Path(client_ca_file) if client_ca_file else None
        unknown = set(verify_clients) - set(TRANSPORTS)
        if unknown:
            raise ConfigError(f"client verification for unknown transports {sorted(unknown)}")
        self.verify_clients = verify_clients if self.client_ca_file else frozenset()
        self._throttle = Throttle(clock=clock)
        try:
            material, context = self._load()
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"TLS: cannot load {self._describe()}: {exc}") from None
        self._material, self._context = material, context
        self._grpc_given: TlsMaterial | None = None
        self._failed_state: tuple[FileState, ...] | None = None
        self._last_problem: str | None = None
        self.reloads = 0

    def _describe(self) -> str:
        files = [f"certificate {self.cert_file}", f"key {self.key_file}"]
        if self.client_ca_file:
            files.append(f"client CA {self.client_ca_file}")
        return ", ".join(files)

    # Reading -------------------------------------------------------------------------------------
    def _paths(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file) + ((self.client_ca_file,) if self.client_ca_file else ())

    def _state(self) -> tuple[FileState, ...]:
        return file_states(self._paths())

    def _read(self) -> TlsMaterial:
        before = self._state()
        material = TlsMaterial(self.cert_file.read_bytes(), self.key_file.read_bytes(),
                               self.client_ca_file.read_bytes() if self.client_ca_file else None, before)
        if self._state() != before:
            raise ValueError("the files changed while they were read")
        return material

    def _load(self) -> tuple[TlsMaterial, ssl.SSLContext]:
        material = self._read()
        context = self._http_context(material)
        # load_cert_chain reads the paths again: unchanged files mean it loaded the bytes just read
        if self._state() != material.state:
            raise ValueError("the files changed while they were loaded")
        return material, context

    def _http_context(self, material: TlsMaterial) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if material.client_ca is not None and "http" in self.verify_clients:
            context.load_verify_locations(cadata=material.client_ca.decode("ascii"))
            context.verify_mode = ssl.CERT_REQUIRED
        context.set_alpn_protocols(["http/1.1"])
        return context

    def refresh(self) -> None:
        """Re-read the files if they changed (at most once a second)."""
        if not self._throttle.due():
            return
        try:
            state: tuple[FileState, ...] | None = self._state()
        except OSError as exc:  # a file missing for a moment during a rotation
            state, problem = None, exc
        else:
            if state in (self._material.state, self._failed_state):
                return
            try:
                material, context = self._load()
                problem = None
            except (OSError, ssl.SSLError, ValueError) as exc:
                problem = exc
        if problem is not None:
            # retried when the files change again; the same complaint is said once
            if str(problem) != self._last_problem:
                log.warning("TLS files changed but do not load (keeping the previous certificate): %s", problem)
            self._failed_state, self._last_problem = state, str(problem)
            return
        self._material, self._context, self._last_problem = material, context, None
        self.reloads += 1
        log.info("TLS certificate reloaded", extra={"fields": {"cert": str(self.cert_file)}})

    # HTTP ----------------------------------------------------------------------------------------
    def http_context(self) -> ssl.SSLContext:
        """The context to listen with: each handshake is switched to the newest certificate."""
        listening = self._http_context(self._material)

        def switch(connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                   _context: ssl.SSLContext) -> None:
            try:
                self.refresh()
                connection.context = self._context
            except Exception:  # never fail a handshake over a reload problem
                log.exception("TLS reload failed")

        listening.sni_callback = switch
        return listening

    # gRPC ----------------------------------------------------------------------------------------
    def grpc_credentials(self) -> grpc.ServerCredentials:
        verify = self._material.client_ca is not None and "grpc" in self.verify_clients
        return grpc.dynamic_ssl_server_credentials(self._grpc_configuration(self._material), self._grpc_fetch,
                                                   require_client_authentication=verify)

    def _grpc_configuration(self, material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
        self._grpc_given = material
        verify = material.client_ca is not None and "grpc" in self.verify_clients
        return grpc.ssl_server_certificate_configuration([(material.key, material.cert)],
                                                         root_certificates=material.client_ca if verify else None)

    def _grpc_fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC (on its own threads) before each handshake: None keeps the current one."""
        try:
            self.refresh()
            material = self._material
            return None if material is self._grpc_given else self._grpc_configuration(material)
        except Exception:
            log.exception("TLS reload failed")
            return None
