"""End-to-end fixtures: our server (a tiny checkpoint) and a real Weaviate that vectorizes through it.

Per session: our server starts first as a subprocess on a free 127.0.0.1 port; then Weaviate
(`WEAVIATE_BIN`, else the cached or freshly `go install`ed v1.39.0 binary) starts on 127.0.0.1 with
free REST, gRPC, gossip/data and raft ports, a temporary data folder, anonymous access, only the
multi2vec-bind module, BIND_INFERENCE_API pointing at our server, telemetry and profiling off and
MODULES_CLIENT_TIMEOUT=600s. Both are stopped at the end (SIGTERM, then SIGKILL).

An existing Weaviate instead of a fresh one: `pytest tests/e2e --weaviate-url URL
--weaviate-grpc-port P --vectorizer-port Q` (or the environment variables IBV_E2E_WEAVIATE_URL,
IBV_E2E_WEAVIATE_GRPC_PORT, IBV_E2E_VECTORIZER_PORT, which also work when pytest runs the whole
suite). That Weaviate's BIND_INFERENCE_API must be http://127.0.0.1:Q: the tests start our server on
that port with the tiny e2e checkpoint, and stop and restart it in one test.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from imagebind_vectorizer.kinds import ENCODERS, InputKind
from imagebind_vectorizer.model.checkpoint import save_official_checkpoint
from imagebind_vectorizer.model.imagebind import random_model
from imagebind_vectorizer.weaviate.local import LocalServerError, LocalVectorizer, LocalWeaviate
from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient
from tests import media
from tests.e2e.support import gray_picture, imu_recording


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("weaviate", "end-to-end tests against a real Weaviate")
    group.addoption("--weaviate-url", default=None,
                    help="use this running Weaviate instead of starting one [env IBV_E2E_WEAVIATE_URL]")
    group.addoption("--weaviate-grpc-port", type=int, default=None,
                    help="its gRPC port [env IBV_E2E_WEAVIATE_GRPC_PORT, default 50051]")
    group.addoption("--vectorizer-port", type=int, default=None,
                    help="port for our server; an existing Weaviate's BIND_INFERENCE_API must point at it "
                         "[env IBV_E2E_VECTORIZER_PORT]")


def _option(config: pytest.Config, name: str, env: str) -> str | None:
    value = config.getoption(name, default=None)
    return str(value) if value is not None else os.environ.get(env) or None


# The model ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def e2e_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_config) -> Path:
    """The tiny architecture with random weights rescaled so that different inputs get clearly
    different vectors. Plain random init (every weight ~N(0, 0.02), LayerNorm scales included)
    maps all images, all IMU recordings, ... to nearly the same direction (cosine 0.9999+), which
    would make "the exact input is the top hit" untestable."""
    model = random_model(tiny_config, ENCODERS, seed=11)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
            elif ("blocks" in name or "head.proj" in name) and name.endswith("weight"):
                param.mul_(20.0)
        model.encoders["text"].logit_scale.log_logit_scale.fill_(4.2)  # a learned text scale, exp(4.2) ~ 66.7
    path = tmp_path_factory.mktemp("e2e-checkpoint") / "imagebind_e2e_tiny.pth"
    save_official_checkpoint(model, path)
    return path


# Servers -----------------------------------------------------------------------------------------
def e2e_serve_args(checkpoint: Path, config_path: Path) -> list[str]:
    """`serve` flags of our server in the end-to-end tests (the tiny checkpoint, unit vectors)."""
    return ["--checkpoint", str(checkpoint), "--model-config", str(config_path), "--output-scaling", "unit",
            "--log-format", "text", "--log-level", "info", "--shutdown-grace-s", "5",
            "--dtype", "float32"]  # pinned: `auto` may choose bfloat16 here, and vectors are compared


@pytest.fixture(scope="session")
def vectorizer(request: pytest.FixtureRequest, e2e_checkpoint: Path, tiny_config_path: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalVectorizer]:
    port = _option(request.config, "--vectorizer-port", "IBV_E2E_VECTORIZER_PORT")
    logs = tmp_path_factory.mktemp("logs")
    server = LocalVectorizer(e2e_serve_args(e2e_checkpoint, tiny_config_path), port=int(port) if port else 0,
                             log_path=logs / "vectorizer.log", python=sys.executable,
                             grpc_port=0)  # gRPC on a free port: ingest --segments streams long files to it
    try:
        server.start(timeout=180)
    except LocalServerError as exc:
        pytest.fail(f"our server did not start: {exc}", pytrace=False)
    yield server
    server.stop()


@dataclass
class WeaviateEndpoint:
    url: str
    grpc_port: int
    process: LocalWeaviate | None


@pytest.fixture(scope="session")
def weaviate_server(request: pytest.FixtureRequest, vectorizer: LocalVectorizer,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeaviateEndpoint]:
    url = _option(request.config, "--weaviate-url", "IBV_E2E_WEAVIATE_URL")
    if url:
        grpc = _option(request.config, "--weaviate-grpc-port", "IBV_E2E_WEAVIATE_GRPC_PORT")
        yield WeaviateEndpoint(url.rstrip("/"), int(grpc or 50051), None)
        return
    logs = tmp_path_factory.mktemp("weaviate")
    local = LocalWeaviate(vectorizer.url, data_dir=logs / "data", log_path=logs / "weaviate.log",
                          modules_client_timeout_s=600)
    try:
        local.start(timeout=180)
    except LocalServerError as exc:
        pytest.fail(f"Weaviate did not start: {exc}\n--- our server's log:\n{vectorizer.log_tail()}", pytrace=False)
    yield WeaviateEndpoint(local.url, local.grpc_port, local)
    local.stop()
    if request.session.testsfailed:  # leave the servers' own account next to the failures
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            for name, process in (("Weaviate", local), ("our server", vectorizer)):
                reporter.write_sep("-", f"{name} log ({process.log_path}), last lines")
                reporter.write_line(process.log_tail(40))
    local.cleanup()


@pytest.fixture(scope="session")
def client(weaviate_server: WeaviateEndpoint):
    from imagebind_vectorizer.weaviate.client import connect

    c = connect(weaviate_server.url, grpc_port=weaviate_server.grpc_port, timeout_s=300)
    yield c
    c.close()


@pytest.fixture(scope="session")
def ours(vectorizer: LocalVectorizer) -> VectorizerClient:
    """Our server, called directly (the way Weaviate calls it)."""
    return VectorizerClient(vectorizer.url)


@pytest.fixture(scope="session")
def dimensions(ours: VectorizerClient) -> int:
    return int(ours.meta()["dimensions"])


@pytest.fixture
def collection_name(request: pytest.FixtureRequest, client) -> Iterator[str]:
    """A fresh collection name for this test; the collection is deleted afterwards."""
    base = re.sub(r"[^0-9A-Za-z]", "", request.node.name.title())[:40]
    name = f"E2e{base}{uuid.uuid4().hex[:6]}"
    yield name
    if client.collections.exists(name):
        client.collections.delete(name)


@pytest.fixture
def cli(weaviate_server: WeaviateEndpoint, vectorizer: LocalVectorizer, capsys: pytest.CaptureFixture[str]):
    """Run the CLI in-process with the session's connection options; returns (code, stdout, stderr)."""
    from imagebind_vectorizer.cli import main

    def run(*argv: str, connection: bool = True, server: bool = False) -> tuple[int, str, str]:
        args = list(argv)
        if connection:
            args += ["--weaviate-url", weaviate_server.url, "--weaviate-grpc-port", str(weaviate_server.grpc_port)]
        if server:
            args += ["--server", vectorizer.url]
        capsys.readouterr()
        code = main(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


# Media ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def samples() -> dict[InputKind, list[bytes]]:
    """Three distinct, small inputs of each media kind (different seeds, different contents)."""
    return {
        InputKind.IMAGE: [media.image_bytes("PNG", 96, 72, seed=s) for s in (1, 2, 3)],
        InputKind.AUDIO: [media.audio_bytes("wav", 1.0, freq=f, seed=i) for i, f in enumerate((220.0, 660.0, 1500.0))],
        InputKind.VIDEO: [media.video_bytes(1.0, 4, 64, 48, seed=s) for s in (1, 2, 3)],
        InputKind.DEPTH: [gray_picture(s, "PNG") for s in (11, 12, 13)],
        InputKind.THERMAL: [gray_picture(s, "JPEG") for s in (21, 22, 23)],
        InputKind.IMU: [imu_recording(s) for s in (0, 1, 2)],
    }


