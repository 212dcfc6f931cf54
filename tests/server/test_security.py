"""Authentication and TLS on both transports of a real server on 127.0.0.1: no key, wrong key, good
key (HTTP Basic as Weaviate sends it, Bearer, gRPC metadata), keys rotated through the key file
without a restart, open probes, /metrics with its own keys, reflection, TLS with a test CA, mTLS, a
renewed certificate served without a restart, and no key in any log line the server writes."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from imagebind_vectorizer.errors import ConfigError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.runtime.embedder import Embedder
from imagebind_vectorizer.server.app import Server
from imagebind_vectorizer.server.grpc_service import SERVICE_NAME
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2_grpc as pb_grpc
from imagebind_vectorizer.server.watch import RELOAD_INTERVAL_S
from imagebind_vectorizer.settings import Settings
from imagebind_vectorizer.weaviate.errors import WeaviateConnectError
from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient
from tests import media
from tests.certs import TestCA, serial_of
from tests.server.support import (
    InProcessServer,
    LoopThread,
    embedding_vector,
    item,
    start_serve,
    start_server,
    vectorize_body,
    wait_until,
)

OLD = "old-key-0123456789abcdefghij"
NEW = "new-key-0123456789abcdefghij"
WRONG = "not-the-key-0123456789abcdef"
SCRAPER = "scraper-key-0123456789abcdef"
TEXTS = ["a red bicycle", "rain on a window"]


# Clients ---------------------------------------------------------------------------------------------
def basic(password: str, user: str = "weaviate") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> dict:
        return json.loads(self.body)


def call(port: int, method: str, path: str, *, authorization: str | None = None, body: bytes | None = None,
         context: ssl.SSLContext | None = None, extra: dict[str, str] | None = None) -> Answer:
    """One request with the headers Go's net/http sends for Weaviate (plus Authorization, which Go
    derives from BIND_INFERENCE_API's user:password)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context) if context \
        else http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{port}")
        conn.putheader("User-Agent", "Go-http-client/1.1")
        if authorization is not None:
            conn.putheader("Authorization", authorization)
        for name, value in (extra or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Accept-Encoding", "gzip")
        conn.endheaders(body)
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def raw_answer(port: int, request: bytes) -> bytes:
    """Send bytes as they are (e.g. a request no HTTP client library would write); read to the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def vectorize(port: int, authorization: str | None, context: ssl.SSLContext | None = None) -> Answer:
    return call(port, "POST", "/vectorize", authorization=authorization, body=vectorize_body(texts=TEXTS),
                context=context)


def assert_unauthorized(answer: Answer, message: str) -> None:
    assert answer.status == 401, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    assert message in answer.json()["error"]
    challenges = answer.headers["www-authenticate"]
    assert "Basic realm=" in challenges and "Bearer realm=" in challenges


def stub_for(target: str, credentials: grpc.ChannelCredentials | None = None
             ) -> tuple[grpc.Channel, pb_grpc.VectorizerStub]:
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    return channel, pb_grpc.VectorizerStub(channel)


def bearer(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


# Fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "api-keys"
    path.write_text(f"# the keys Weaviate and our clients may use\n{OLD}\n")
    return path


@pytest.fixture(scope="module")
def secured(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder,
            key_file: Path) -> Iterator[InProcessServer]:
    running = start_server(loop_thread, server_settings.replace(api_key_file=str(key_file)), shared_embedder)
    yield running
    running.stop()


def set_keys(key_file: Path, *keys: str) -> None:
    """Replace the key file as a Secret update does (a new file renamed over the old one)."""
    tmp = key_file.with_name(key_file.name + ".new")
    tmp.write_text("\n".join(keys) + "\n")
    os.replace(tmp, key_file)


# HTTP --------------------------------------------------------------------------------------------------
def test_http_without_a_key_is_401_before_the_body_is_read(secured: InProcessServer) -> None:
    assert_unauthorized(vectorize(secured.http_port, None), "authentication required")
    assert_unauthorized(call(secured.http_port, "GET", "/meta"), "authentication required")
    assert_unauthorized(call(secured.http_port, "GET", "/no-such-path"), "authentication required")
    # A promised 100 MB body that never comes: the answer does not wait for it.
    began = time.monotonic()
    answer = call(secured.http_port, "POST", "/vectorize", extra={"Content-Length": str(100 * 1024 * 1024)})
    assert_unauthorized(answer, "authentication required")
    assert time.monotonic() - began < 5
    assert secured.sample("imagebind_requests_total", {"transport": "http", "endpoint": "/vectorize",
                                                       "status": "401"}) >= 2


@pytest.mark.parametrize("header", [basic(WRONG), f"Bearer {WRONG}", basic(OLD.upper()), "Bearer", "Basic !!",
                                    f"Digest {OLD}", basic(OLD[:-1]), basic(OLD + "x")])
def test_http_with_a_wrong_or_malformed_key_is_401(secured: InProcessServer, header: str) -> None:
    answer = vectorize(secured.http_port, header)
    assert answer.status == 401 and "error" in answer.json()


@pytest.mark.parametrize("header", [basic(OLD), basic(OLD, user=""), basic(OLD, user="anyone"), f"Bearer {OLD}"])
def test_http_with_the_key_as_basic_password_or_bearer_works(secured: InProcessServer, reference: Embedder,
                                                             header: str) -> None:
    answer = vectorize(secured.http_port, header)
    assert answer.status == 200, answer.body
    np.testing.assert_allclose(answer.json()["textVectors"], reference.embed(InputKind.TEXT, TEXTS), atol=1e-5)


def test_a_repeated_authorization_is_refused_on_both_transports(secured: InProcessServer) -> None:
    """Authorization is not a list: with two values, which one counts is a guess a proxy in front may
    make differently (the first held before on HTTP, the last on gRPC). Neither is taken."""
    for first, second in ((OLD, WRONG), (WRONG, OLD), (OLD, OLD)):
        answer = call(secured.http_port, "GET", "/meta", authorization=f"Bearer {first}",
                      extra={"Authorization": basic(second)})
        assert_unauthorized(answer, "authentication required")
    channel, stub = stub_for(secured.grpc_target)
    try:
        for first, second in ((OLD, WRONG), (WRONG, OLD)):
            with pytest.raises(grpc.RpcError) as info:
                stub.Meta(pb.MetaRequest(), metadata=(*bearer(first), *bearer(second)), timeout=10)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert stub.Meta(pb.MetaRequest(), metadata=bearer(OLD), timeout=10).model == "ImageBindModel"
    finally:
        channel.close()


def test_probes_are_open_and_path_tricks_do_not_reach_the_api(secured: InProcessServer) -> None:
    for path in ("/.well-known/live", "/.well-known/ready"):
        assert call(secured.http_port, "GET", path).status == 204, path
        assert call(secured.http_port, "HEAD", path).status == 204, path
    for path in ("/.well-known/ready/../../vectorize", "/.well-known/live/../../meta", "//meta",
                 "/.well-known/%2e%2e/meta", "/meta?/.well-known/ready"):
        answer = call(secured.http_port, "GET", path)
        assert answer.status in (401, 404, 405), (path, answer.status)
        assert b"ImageBindModel" not in answer.body, path


def test_metrics_need_a_key_too(secured: InProcessServer) -> None:
    assert call(secured.http_port, "GET", "/metrics").status == 401
    answer = call(secured.http_port, "GET", "/metrics", authorization=f"Bearer {OLD}")
    assert answer.status == 200 and b"imagebind_requests_total" in answer.body


def test_metrics_with_their_own_key_or_open(loop_thread: LoopThread, server_settings: Settings,
                                            shared_embedder: Embedder) -> None:
    own = start_server(loop_thread, server_settings.replace(api_keys=OLD, metrics_api_keys=SCRAPER), shared_embedder)
    try:
        assert call(own.http_port, "GET", "/metrics", authorization=f"Bearer {SCRAPER}").status == 200
        assert call(own.http_port, "GET", "/metrics", authorization=f"Bearer {OLD}").status == 401
        assert vectorize(own.http_port, f"Bearer {SCRAPER}").status == 401, "a scraper's key cannot vectorize"
        assert call(own.http_port, "GET", "/metrics").status == 401
    finally:
        own.stop()
    open_metrics = start_server(loop_thread, server_settings.replace(api_keys=OLD, metrics_open=True,
                                                                     auth_probes=True), shared_embedder)
    try:
        assert call(open_metrics.http_port, "GET", "/metrics").status == 200
        assert vectorize(open_metrics.http_port, None).status == 401
        assert call(open_metrics.http_port, "GET", "/.well-known/ready").status == 401, "auth_probes"
        assert call(open_metrics.http_port, "GET", "/.well-known/ready", authorization=basic(OLD)).status == 204
    finally:
        open_metrics.stop()


def test_keys_rotate_through_the_key_file_without_a_restart(secured: InProcessServer, key_file: Path) -> None:
    port = secured.http_port
    channel, stub = stub_for(secured.grpc_target)
    try:
        assert vectorize(port, basic(NEW)).status == 401
        set_keys(key_file, OLD, NEW)  # 1: both keys valid while clients move over
        wait_until(lambda: vectorize(port, basic(NEW)).status == 200, timeout=10 * RELOAD_INTERVAL_S)
        assert vectorize(port, basic(OLD)).status == 200
        stub.Meta(pb.MetaRequest(), metadata=bearer(NEW), timeout=10)
        set_keys(key_file, NEW)  # 2: the old key is retired
        wait_until(lambda: vectorize(port, basic(OLD)).status == 401, timeout=10 * RELOAD_INTERVAL_S)
        assert vectorize(port, basic(NEW)).status == 200
        with pytest.raises(grpc.RpcError) as info:
            stub.Meta(pb.MetaRequest(), metadata=bearer(OLD), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        key_file.write_text("")  # 3: a rotation caught half-way keeps the last good keys
        time.sleep(2 * RELOAD_INTERVAL_S)
        assert vectorize(port, basic(NEW)).status == 200 and vectorize(port, None).status == 401
    finally:
        set_keys(key_file, OLD)
        wait_until(lambda: vectorize(port, basic(OLD)).status == 200, timeout=10 * RELOAD_INTERVAL_S)
        channel.close()


def test_meta_shows_no_key(secured: InProcessServer) -> None:
    answer = call(secured.http_port, "GET", "/meta", authorization=basic(OLD))
    assert answer.status == 200
    for secret in (OLD, NEW, str(secured.settings.api_key_file)):
        assert secret not in answer.body.decode()


def test_the_python_client_sends_the_key(secured: InProcessServer, reference: Embedder) -> None:
    url = f"http://127.0.0.1:{secured.http_port}"
    vectors = VectorizerClient(url, api_key=OLD).embed(InputKind.TEXT, TEXTS)
    np.testing.assert_allclose(vectors, reference.embed(InputKind.TEXT, TEXTS), atol=1e-5)
    # as in BIND_INFERENCE_API: the URL's password; messages never repeat it
    client = VectorizerClient(f"http://weaviate:{OLD}@127.0.0.1:{secured.http_port}")
    assert client.meta()["model"] == "ImageBindModel" and OLD not in client.url
    for wrong in (VectorizerClient(url), VectorizerClient(url, api_key=WRONG)):
        with pytest.raises(WeaviateConnectError, match="requires an API key") as info:
            wrong.meta()
        assert WRONG not in str(info.value)


# gRPC -------------------------------------------------------------------------------------------------
def test_grpc_needs_the_key_in_metadata(secured: InProcessServer, reference: Embedder) -> None:
    channel, stub = stub_for(secured.grpc_target)
    request = pb.VectorizeRequest(items=[item(InputKind.TEXT, t) for t in TEXTS])
    try:
        for metadata in ((), bearer(WRONG), (("authorization", basic(WRONG)),), (("authorization", OLD),)):
            for call_rpc in (lambda m: stub.Vectorize(request, metadata=m, timeout=10),
                             lambda m: stub.Meta(pb.MetaRequest(), metadata=m, timeout=10),
                             lambda m: list(stub.VectorizeStream(
                                 iter([pb.VectorizeStreamRequest(sequence=1, item=item(InputKind.TEXT, "x"))]),
                                 metadata=m, timeout=10))):
                with pytest.raises(grpc.RpcError) as info:
                    call_rpc(metadata)
                assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED, metadata
                assert WRONG not in (info.value.details() or "")
        response = stub.Vectorize(request, metadata=bearer(OLD), timeout=30)
        np.testing.assert_allclose([embedding_vector(e) for e in response.embeddings],
                                   reference.embed(InputKind.TEXT, TEXTS), atol=1e-5)
        streamed = list(stub.VectorizeStream(
            iter([pb.VectorizeStreamRequest(sequence=7, item=item(InputKind.IMAGE, media.image_bytes("PNG", 48, 40)))]),
            metadata=(("authorization", basic(OLD)),), timeout=30))
        assert [r.sequence for r in streamed] == [7] and streamed[0].HasField("embedding")
        assert secured.sample("imagebind_requests_total", {"transport": "grpc", "status": "UNAUTHENTICATED",
                                                           "endpoint": f"/{SERVICE_NAME}/Vectorize"}) >= 4
    finally:
        channel.close()


def test_grpc_health_is_open_and_reflection_is_off(secured: InProcessServer) -> None:
    channel = grpc.insecure_channel(secured.grpc_target)
    try:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                                                           timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                 metadata=bearer(OLD), timeout=10))
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED, "reflection is off when keys are set"
    finally:
        channel.close()


def test_reflection_when_asked_for_needs_a_key_and_health_can_be_closed(
        loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder) -> None:
    running = start_server(loop_thread, server_settings.replace(api_keys=OLD, grpc_reflection="on", auth_probes=True),
                           shared_embedder)
    channel = grpc.insecure_channel(running.grpc_target)
    try:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

        def services(metadata: tuple) -> list[str]:
            responses = list(reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=metadata, timeout=10))
            return [s.name for s in responses[0].list_services_response.service]

        assert SERVICE_NAME in services(bearer(OLD))
        with pytest.raises(grpc.RpcError) as info:
            services(())
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert health.Check(health_pb2.HealthCheckRequest(), metadata=bearer(OLD), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
        running.stop()


# Start-up ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("changes", "complaint"), [
    ({"api_key_file": "/nonexistent/keys"}, "/nonexistent/keys"),
    ({"api_keys": "short"}, "keys need 16"),
    ({"tls_cert_file": "/nonexistent/cert.pem", "tls_key_file": "/nonexistent/key.pem"}, "cannot load"),
])
def test_a_bad_key_file_or_certificate_stops_the_start(server_settings: Settings, changes: dict,
                                                       complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        Server(server_settings.replace(**changes), engine=object())  # type: ignore[arg-type]


def test_half_configured_tls_is_refused(server_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="go together"):
        server_settings.replace(tls_cert_file="cert.pem")
    with pytest.raises(ConfigError, match="mTLS runs over TLS"):
        server_settings.replace(tls_client_ca_file="ca.pem")


# TLS --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, stranger = TestCA("server CA"), TestCA("client CA"), TestCA("someone else")
    cert, key = server_ca.server().write(folder, "server")
    client_cert, client_key = client_ca.client("trusted client").write(folder, "client")
    stranger_cert, stranger_key = stranger.client("stranger").write(folder, "stranger")
    return {"folder": folder, "server_ca": server_ca, "cert": cert, "key": key,
            "server_ca_file": server_ca.write(folder / "server-ca.pem"),
            "client_ca_file": client_ca.write(folder / "client-ca.pem"),
            "client": (client_cert, client_key), "stranger": (stranger_cert, stranger_key)}


def https_context(pki: dict, client: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["server_ca_file"]))
    if client:
        cert, key = pki[client]
        context.load_cert_chain(cert, key)
    return context


def grpc_credentials(pki: dict, client: str | None = None) -> grpc.ChannelCredentials:
    roots = pki["server_ca_file"].read_bytes()
    if client is None:
        return grpc.ssl_channel_credentials(roots)
    cert, key = pki[client]
    return grpc.ssl_channel_credentials(roots, key.read_bytes(), cert.read_bytes())


def served_serial(port: int, context: ssl.SSLContext) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return serial_of(tls.getpeercert(binary_form=True))


def test_tls_on_both_transports_with_a_test_ca(loop_thread: LoopThread, server_settings: Settings,
                                               shared_embedder: Embedder, pki: dict) -> None:
    running = start_server(loop_thread, server_settings.replace(
        tls_cert_file=str(pki["cert"]), tls_key_file=str(pki["key"]), api_keys=OLD), shared_embedder)
    try:
        answer = vectorize(running.http_port, basic(OLD), https_context(pki))
        assert answer.status == 200 and len(answer.json()["textVectors"]) == 2
        assert call(running.http_port, "GET", "/.well-known/ready", context=https_context(pki)).status == 204
        with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust the CA
            vectorize(running.http_port, basic(OLD), ssl.create_default_context())
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):  # plain HTTP on the TLS port
            vectorize(running.http_port, basic(OLD))
        client = VectorizerClient(f"https://127.0.0.1:{running.http_port}", api_key=OLD,
                                  ca_file=str(pki["server_ca_file"]))
        assert client.embed(InputKind.TEXT, TEXTS).shape == (2, shared_embedder.config.out_embed_dim)

        channel, stub = stub_for(running.grpc_target, grpc_credentials(pki))
        try:
            assert stub.Meta(pb.MetaRequest(), metadata=bearer(OLD), timeout=10).model == "ImageBindModel"
        finally:
            channel.close()
        plain, plain_stub = stub_for(running.grpc_target)
        try:
            with pytest.raises(grpc.RpcError) as info:
                plain_stub.Meta(pb.MetaRequest(), metadata=bearer(OLD), timeout=5)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        finally:
            plain.close()
    finally:
        running.stop()


def test_connections_that_never_finish_their_tls_handshake_count_against_the_limit(
        loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder, pki: dict) -> None:
    """A connection holds a file descriptor from its accept, TLS handshake or not: unfinished
    handshakes count, and the oldest make room for new connections as idle ones do (a TLS listener
    used to hand a connection to the limit only after its handshake, so connections that never
    sent a byte could take every file descriptor the process had)."""
    running = start_server(loop_thread, server_settings.replace(
        tls_cert_file=str(pki["cert"]), tls_key_file=str(pki["key"]), max_connections=8), shared_embedder)
    silent: list[socket.socket] = []
    try:
        for _ in range(20):
            silent.append(socket.create_connection(("127.0.0.1", running.http_port), timeout=30))
        assert vectorize(running.http_port, None, https_context(pki)).status == 200
        assert running.sample("imagebind_connections", {"transport": "http"}) <= 8
        assert running.sample("imagebind_connections_closed_total",
                              {"transport": "http", "reason": "evicted"}) >= 12
        assert silent[0].recv(1) == b"", "the oldest unfinished handshake made room first"
    finally:
        for sock in silent:
            sock.close()
        running.stop()


def test_a_renewed_certificate_is_served_without_a_restart(loop_thread: LoopThread, server_settings: Settings,
                                                           shared_embedder: Embedder, pki: dict,
                                                           tmp_path: Path) -> None:
    ca: TestCA = pki["server_ca"]
    first = ca.server("first")
    cert, key = first.write(tmp_path, "live")
    running = start_server(loop_thread, server_settings.replace(tls_cert_file=str(cert), tls_key_file=str(key)),
                           shared_embedder)
    context = https_context(pki)
    try:
        assert served_serial(running.http_port, context) == first.serial
        renewed = ca.server("renewed")
        renewed.write(tmp_path, "live")
        wait_until(lambda: served_serial(running.http_port, context) == renewed.serial, timeout=15)
        assert vectorize(running.http_port, None, context).status == 200
        channel, stub = stub_for(running.grpc_target, grpc_credentials(pki))
        try:
            assert stub.Meta(pb.MetaRequest(), timeout=10).model == "ImageBindModel"
        finally:
            channel.close()
        # gRPC's handshakes take the renewed certificate too
        assert running.server.security.tls is not None and running.server.security.tls.reloads >= 1

        # a rotation caught half-way (a new certificate, the old key): the renewed pair stays in use
        ca.server("half-way").write(tmp_path / "other", "live")
        (tmp_path / "other" / "live.crt").replace(cert)
        time.sleep(2.5)
        assert served_serial(running.http_port, context) == renewed.serial
    finally:
        running.stop()


def test_grpc_serves_the_renewed_certificate(loop_thread: LoopThread, server_settings: Settings,
                                             shared_embedder: Embedder, pki: dict, tmp_path: Path) -> None:
    ca: TestCA = pki["server_ca"]
    cert, key = ca.server("first").write(tmp_path, "live")
    running = start_server(loop_thread, server_settings.replace(tls_cert_file=str(cert), tls_key_file=str(key)),
                           shared_embedder)
    try:
        channel, stub = stub_for(running.grpc_target, grpc_credentials(pki))
        stub.Meta(pb.MetaRequest(), timeout=10)
        channel.close()
        # Renewed by a different CA: a client that trusts only the old CA must now fail to connect,
        # one that trusts the new CA must succeed; nothing restarted in between.
        other = TestCA("renewal CA")
        other.server("renewed").write(tmp_path, "live")
        other_roots = other.cert_pem

        def new_ca_works() -> bool:
            channel, stub = stub_for(running.grpc_target, grpc.ssl_channel_credentials(other_roots))
            try:
                stub.Meta(pb.MetaRequest(), timeout=5)
                return True
            except grpc.RpcError:
                return False
            finally:
                channel.close()

        wait_until(new_ca_works, timeout=15)
        old_channel, old_stub = stub_for(running.grpc_target, grpc_credentials(pki))
        try:
            with pytest.raises(grpc.RpcError) as info:
                old_stub.Meta(pb.MetaRequest(), timeout=5)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        finally:
            old_channel.close()
    finally:
        running.stop()


@pytest.mark.parametrize("scope", ["both", "grpc"])
def test_client_certificates_mtls(loop_thread: LoopThread, server_settings: Settings, shared_embedder: Embedder,
                                  pki: dict, scope: str) -> None:
    running = start_server(loop_thread, server_settings.replace(
        tls_cert_file=str(pki["cert"]), tls_key_file=str(pki["key"]), tls_client_ca_file=str(pki["client_ca_file"]),
        tls_client_auth=scope), shared_embedder)
    try:
        # gRPC always verifies here
        for client, ok in (("client", True), (None, False), ("stranger", False)):
            channel, stub = stub_for(running.grpc_target, grpc_credentials(pki, client))
            try:
                if ok:
                    assert stub.Meta(pb.MetaRequest(), timeout=10).model == "ImageBindModel"
                else:
                    with pytest.raises(grpc.RpcError) as info:
                        stub.Meta(pb.MetaRequest(), timeout=5)
                    assert info.value.code() is grpc.StatusCode.UNAVAILABLE, client
            finally:
                channel.close()
        # HTTP: verified with "both"; with "grpc" (where stock Weaviate calls HTTP) any TLS client gets in
        assert vectorize(running.http_port, None, https_context(pki, "client")).status == 200
        for client in (None, "stranger"):
            if scope == "both":
                with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
                    vectorize(running.http_port, None, https_context(pki, client))
            else:
                assert vectorize(running.http_port, None, https_context(pki, client)).status == 200
    finally:
        running.stop()


# Logs -------------------------------------------------------------------------------------------------
def test_no_key_in_any_log_line(server_settings: Settings, tmp_path: Path) -> None:
    """A real `serve` process at debug level, with keys from the environment and a file, called with
    good, wrong and rotated keys on both transports: its whole output never holds a key."""
    key_file = tmp_path / "keys"
    key_file.write_text(NEW + "\n")
    process = start_serve(server_settings, tmp_path / "serve.log", extra_args=[
        "--log-level", "debug", "--api-key-file", str(key_file)],
        env={"IMAGEBIND_API_KEYS": OLD})
    try:
        wait_until(lambda: call(process.http_port, "GET", "/.well-known/ready").status == 204, timeout=120)
        for header in (basic(OLD), f"Bearer {NEW}", basic(WRONG), f"Bearer {WRONG}", None):
            vectorize(process.http_port, header)
        call(process.http_port, "GET", "/metrics", authorization=basic(WRONG))
        call(process.http_port, "POST", "/vectorize", authorization=basic(OLD), body=b"{not json")
        # Requests aiohttp's parser refuses: its exception quotes the offending header line
        for malformed in (f"Authorization: Bearer {OLD}{'x' * 9000}", f"Authorization: Bearer {NEW}\x00",
                          f"Authorization: Bearer\r\n {OLD}", f"Host: {NEW}\x01"):
            assert raw_answer(process.http_port, b"GET /meta HTTP/1.1\r\nHost: x\r\n" + malformed.encode()
                              + b"\r\n\r\n").startswith(b"HTTP/1.0 400")
        channel, stub = stub_for(f"127.0.0.1:{process.grpc_port}")
        for metadata in (bearer(OLD), bearer(WRONG), ()):
            with contextlib.suppress(grpc.RpcError):
                stub.Vectorize(pb.VectorizeRequest(items=[item(InputKind.TEXT, "x")]), metadata=metadata, timeout=30)
        channel.close()
        set_keys(key_file, NEW, SCRAPER)
        wait_until(lambda: vectorize(process.http_port, basic(SCRAPER)).status == 200, timeout=15)
    finally:
        process.terminate()
        process.proc.wait(30)
    log = process.log()
    assert "request rejected" in log and "key file re-read" in log and '"api_keys": 2' in log
    for secret in (OLD, NEW, WRONG, SCRAPER):
        assert secret not in log, f"a key appears in the server's output:\n{log}"
    assert "malformed HTTP request answered 400" in log


def test_the_segment_client_sends_the_key_over_tls(loop_thread: LoopThread, server_settings: Settings,
                                                   shared_embedder: Embedder, pki: dict, tmp_path: Path) -> None:
    from imagebind_vectorizer.client.segments import SegmentClient
    from imagebind_vectorizer.errors import ImageBindError
    from imagebind_vectorizer.moments import WindowSpec

    running = start_server(loop_thread, server_settings.replace(
        tls_cert_file=str(pki["cert"]), tls_key_file=str(pki["key"]), api_keys=OLD), shared_embedder)
    audio = tmp_path / "long.wav"
    audio.write_bytes(media.wav_bytes(media.window_tone(6.0, 16000, 3.0, seed=2), 16000))
    try:
        with SegmentClient(running.grpc_target, ca_file=pki["server_ca_file"], api_key=OLD) as client:
            assert client.preprocessing() == "official"
            segments = list(client.segments(audio, InputKind.AUDIO, WindowSpec(3.0, 0.0)))
        assert [(s.start, s.end) for s in segments] == [(0, 3), (3, 6)]
        assert all(InputKind.AUDIO in s.vectors for s in segments)
        for key in (None, WRONG):
            with SegmentClient(running.grpc_target, ca_file=pki["server_ca_file"], api_key=key) as client, \
                    pytest.raises(ImageBindError, match="requires an API key"):
                list(client.segments(audio, InputKind.AUDIO, WindowSpec(3.0, 0.0)))
    finally:
        running.stop()
