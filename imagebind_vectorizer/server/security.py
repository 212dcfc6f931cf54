"""The server's security settings in one object both transports read: who may call which route or
method (auth.py) and the TLS material (tls.py). Built once from Settings at start-up; a bad key file
or certificate fails the start instead of serving unprotected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagebind_vectorizer.server.auth import HEALTH_PREFIX, HttpAccess, KeyRing
from imagebind_vectorizer.server.tls import TRANSPORTS, ServerTls
from imagebind_vectorizer.settings import Settings


def _split(keys: str | None) -> list[str]:
    return [k.strip() for k in (keys or "").split(",") if k.strip()]


@dataclass(frozen=True)
class Security:
    http: HttpAccess
    #: the keys gRPC callers present (the API keys)
    grpc_keys: KeyRing
    #: gRPC methods callable without a key (method-name prefixes)
    grpc_open_prefixes: tuple[str, ...]
    grpc_reflection: bool
    tls: ServerTls | None

    @classmethod
    def open(cls) -> Security:
        """No keys, no TLS: what the server was before any of this (tests, loopback use)."""
        keys = KeyRing()
        return cls(HttpAccess(keys), keys, (HEALTH_PREFIX,), True, None)

    @classmethod
    def from_settings(cls, settings: Settings) -> Security:
        api = KeyRing(_split(settings.api_keys), settings.api_key_file, name="API key")
        metrics = KeyRing(_split(settings.metrics_api_keys), settings.metrics_api_key_file, name="metrics key")
        tls = None
        if settings.tls_cert_file and settings.tls_key_file:
            scope = settings.tls_client_auth
            verify = frozenset(TRANSPORTS) if scope == "both" else frozenset({scope})
            tls = ServerTls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file,
                            verify_clients=verify)
        reflection = {"on": True, "off": False, "auto": not api.enabled}[settings.grpc_reflection]
        return cls(HttpAccess(api, metrics, probes_open=not settings.auth_probes, metrics_open=settings.metrics_open),
                   api, () if settings.auth_probes else (HEALTH_PREFIX,), reflection, tls)

    def describe(self) -> dict[str, Any]:
        """What the start-up log says: which protections are on (counts and file names, never keys)."""
        http = self.http
        return {
            "api_keys": len(http.api) if http.api.enabled else 0,
            "api_key_file": str(http.api.file) if http.api.file else None,
            "metrics": "open" if http.metrics_open or not http.enabled else (
                "metrics keys" if http.metrics is not None and http.metrics.enabled else "API keys"),
            "probes": "open" if http.probes_open else "key required",
            "grpc_reflection": self.grpc_reflection,
            "tls": self.tls is not None,
            "client_certificates": sorted(self.tls.verify_clients) if self.tls is not None else [],
        }
