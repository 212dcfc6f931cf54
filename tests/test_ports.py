"""One port story: our server's defaults (settings.py) are the ports of the Dockerfiles, the compose file,
the Helm chart and every README, and none of them is one of Weaviate's own defaults, so both run on one
host with no flags. Read from the files themselves (no Docker, no helm needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from imagebind_vectorizer.settings import (
    SERVER_GRPC_PORT,
    SERVER_HTTP_PORT,
    WEAVIATE_GRPC_PORT,
    WEAVIATE_HTTP_PORT,
    ConnectionSettings,
    Settings,
)
from tests.deploy.dockerfile import parse

ROOT = Path(__file__).resolve().parents[1]
OURS = {SERVER_HTTP_PORT, SERVER_GRPC_PORT}
READMES = [ROOT / "README.md", ROOT / "docker" / "README.md", ROOT / "helm" / "imagebind-vectorizer" / "README.md"]
DEPLOY_TEXTS = [ROOT / "docker" / "compose.yaml", ROOT / "docker" / "compose.gpu.yaml",
                *sorted((ROOT / "helm" / "imagebind-vectorizer").rglob("*.yaml")),
                *sorted((ROOT / "helm" / "imagebind-vectorizer" / "templates").glob("*.txt")),
                ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda"]


def port_of(url: str) -> int:
    match = re.search(r":(\d+)(?:/|$)", url.split("://", 1)[-1])
    assert match, f"{url} names no port"
    return int(match.group(1))


def test_defaults_in_code_leave_weaviates_ports_free() -> None:
    settings, connection = Settings(), ConnectionSettings()
    assert (settings.port, settings.grpc_port) == (SERVER_HTTP_PORT, SERVER_GRPC_PORT)
    assert port_of(connection.server) == settings.port, "the CLI's --server is where `serve` listens"
    assert port_of(connection.weaviate_url) == WEAVIATE_HTTP_PORT == 8080, "Weaviate's own default"
    assert connection.weaviate_grpc_port == WEAVIATE_GRPC_PORT == 50051, "Weaviate's own default"
    assert not OURS & {WEAVIATE_HTTP_PORT, WEAVIATE_GRPC_PORT}


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_images_listen_on_the_default_ports(name: str) -> None:
    stages = parse(ROOT / "docker" / name).stages
    env: dict[str, str] = {}
    exposed: set[int] = set()
    for stage in stages:
        for instruction in stage.all("ENV"):
            env.update(dict(re.findall(r"(\w+)=(\S+)", instruction.args)))
        for instruction in stage.all("EXPOSE"):
            exposed |= {int(p.split("/")[0]) for p in instruction.args.split()}
    assert int(env["IMAGEBIND_PORT"]) == SERVER_HTTP_PORT and int(env["IMAGEBIND_GRPC_PORT"]) == SERVER_GRPC_PORT
    assert exposed == OURS


def test_compose_publishes_each_server_on_its_own_defaults() -> None:
    path = ROOT / "docker" / "compose.yaml"
    services = yaml.safe_load(path.read_text())["services"]
    vectorizer, weaviate = services["vectorizer"], services["weaviate"]
    assert int(vectorizer["environment"]["IMAGEBIND_PORT"]) == SERVER_HTTP_PORT
    assert int(vectorizer["environment"]["IMAGEBIND_GRPC_PORT"]) == SERVER_GRPC_PORT

    def published(service: dict) -> list[tuple[int, int]]:
        pairs = []
        for entry in service["ports"]:  # "${BIND_ADDRESS:-127.0.0.1}:${NAME:-host}:container"
            host = re.search(r"\$\{\w+:-(\d+)\}:(\d+)$", entry)
            assert host, entry
            pairs.append((int(host.group(1)), int(host.group(2))))
        return pairs

    assert published(vectorizer) == [(SERVER_HTTP_PORT, SERVER_HTTP_PORT), (SERVER_GRPC_PORT, SERVER_GRPC_PORT)]
    assert published(weaviate) == [(WEAVIATE_HTTP_PORT, WEAVIATE_HTTP_PORT), (WEAVIATE_GRPC_PORT, WEAVIATE_GRPC_PORT)]


def test_the_chart_serves_on_the_default_ports() -> None:
    values = yaml.safe_load((ROOT / "helm" / "imagebind-vectorizer" / "values.yaml").read_text())
    assert values["containerPorts"] == {"http": SERVER_HTTP_PORT, "grpc": SERVER_GRPC_PORT}
    assert values["service"]["ports"] == {"http": SERVER_HTTP_PORT, "grpc": SERVER_GRPC_PORT}


# Every place a text names our server's address, with the port it must have.
OUR_HTTP_PATTERNS = [
    r"BIND_INFERENCE_API[=:]\s*\S*?:(\d+)",       # Weaviate pointed at us
    r"inferenceUrl:\s*\S*?:(\d+)",                 # Weaviate's Helm chart pointed at us
    r"[/@](?:vectorizer|imagebind|imagebind-vectorizer\S*?):(\d+)",  # our service names
    r"--server\s+\S*?:(\d+)",
    r"(?:localhost|127\.0\.0\.1):(\d+)/\.well-known",  # our probes (Weaviate's are under /v1/)
    r"imagebind-vectorizer serve\b[^\n]*--port\s+(\d+)",
    r"IMAGEBIND_PORT[=:]\s*\"?(\d+)",
]
WEAVIATE_HTTP_PATTERNS = [r"--weaviate-url\s+\S*?:(\d+)", r"(?:localhost|127\.0\.0\.1):(\d+)/v1/",
                          r"WEAVIATE_URL[=:]\s*\S*?:(\d+)"]


def _found(patterns: list[str], text: str) -> list[int]:
    return [int(m) for p in patterns for m in re.findall(p, text)]


@pytest.mark.parametrize("path", READMES + DEPLOY_TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_texts_name_each_server_by_its_default_port(path: Path) -> None:
    text = path.read_text()
    wrong = [p for p in _found(OUR_HTTP_PATTERNS, text) if p != SERVER_HTTP_PORT]
    assert not wrong, f"{path.name} points at our server on {wrong}, not {SERVER_HTTP_PORT}"
    wrong = [p for p in _found(WEAVIATE_HTTP_PATTERNS, text) if p != WEAVIATE_HTTP_PORT]
    assert not wrong, f"{path.name} points at Weaviate on {wrong}, not {WEAVIATE_HTTP_PORT}"
    for host, container in re.findall(r"-p (\d+):(\d+)", text):  # docker run: ours on ours
        assert int(host) == int(container) and int(container) in OURS, f"{path.name}: -p {host}:{container}"


def test_the_patterns_see_the_readme() -> None:
    """The test above is only as good as its patterns: they must find the README's addresses."""
    text = (ROOT / "README.md").read_text()
    assert len(_found(OUR_HTTP_PATTERNS, text)) >= 4
    assert _found(WEAVIATE_HTTP_PATTERNS, text)
