"""docker/compose.yaml (+ compose.gpu.yaml): validated and normalised by Docker Compose itself
(`docker-compose config`, which needs no daemon), then checked service by service."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from imagebind_vectorizer.settings import SERVER_GRPC_PORT, SERVER_HTTP_PORT
from tests.deploy.helpers import DOCKER, REPO, checkpoint_command, load_yaml, run, tool
from tests.deploy.servers import serve_status

pytestmark = pytest.mark.deploy

FILES = {"cpu": ("compose.yaml",), "gpu": ("compose.yaml", "compose.gpu.yaml")}


def _clean_env() -> dict[str, str]:
    """The environment without the variables compose.yaml interpolates, so defaults are what is tested."""
    return {k: v for k, v in os.environ.items()
            if not (k.startswith(("IMAGEBIND_", "VECTORIZER_", "WEAVIATE_", "COMPOSE_")) or
                    k in {"BIND_ADDRESS", "MODULES_CLIENT_TIMEOUT"})}


def compose_config(variant: str, extra_env: dict[str, str] | None = None) -> dict:
    args = [tool("docker-compose")]
    for name in FILES[variant]:
        args += ["-f", str(DOCKER / name)]
    args += ["config", "--format", "json"]
    result = run(args, env={**_clean_env(), **(extra_env or {})}, cwd=DOCKER)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(params=sorted(FILES), ids=sorted(FILES))
def config(request) -> tuple[str, dict]:
    return request.param, compose_config(request.param)


def test_compose_rejects_a_broken_file(tmp_path):
    """Control: `docker-compose config` does validate against the compose schema."""
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  a:\n    image: busybox\n    healthcheck: {test: [CMD, 'true'], retries: many}\n")
    result = run([tool("docker-compose"), "-f", str(broken), "config"], env=_clean_env(), cwd=tmp_path)
    assert result.returncode != 0 and "retries" in result.stderr


def test_services_and_start_order(config):
    _variant, cfg = config
    services = cfg["services"]
    assert set(services) == {"api-key", "model-download", "vectorizer", "weaviate"}
    assert services["vectorizer"]["depends_on"]["model-download"]["condition"] == "service_completed_successfully"
    assert services["vectorizer"]["depends_on"]["api-key"]["condition"] == "service_completed_successfully"
    # Weaviate exits if multi2vec-bind is not ready within 120 s of its own start: wait for healthy.
    assert services["weaviate"]["depends_on"]["vectorizer"]["condition"] == "service_healthy"
    assert services["model-download"]["restart"] == "no"
    assert services["model-download"]["image"] == services["vectorizer"]["image"]
    assert services["model-download"]["build"] == services["vectorizer"]["build"]
    assert {v["source"]: v["target"] for v in services["weaviate"]["volumes"]} == {
        "weaviate-data": "/var/lib/weaviate", "api-key": "/etc/imagebind-vectorizer/api-keys"}
    assert set(cfg["volumes"]) == {"models", "weaviate-data", "api-key", "segment-spool"}


def test_weaviate_module_settings(config):
    _variant, cfg = config
    weaviate = cfg["services"]["weaviate"]
    env = weaviate["environment"]
    assert re.fullmatch(r"cr\.weaviate\.io/semitechnologies/weaviate:1\.39\.\d+", weaviate["image"])
    makefile_version = re.search(r"^WEAVIATE_VERSION \?= v(\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert weaviate["image"].endswith(":" + makefile_version), "the Weaviate version the project tests against"
    assert env["ENABLE_MODULES"] == "multi2vec-bind"
    assert env["DEFAULT_VECTORIZER_MODULE"] == "none"
    assert "BIND_INFERENCE_API" not in env, "composed with the key at start (test_weaviate_sends_the_generated_key)"
    timeout = env["MODULES_CLIENT_TIMEOUT"]
    assert re.fullmatch(r"\d+s", timeout) and int(timeout[:-1]) > 50
    assert weaviate["command"] == ["--host", "0.0.0.0", "--port", "8080", "--scheme", "http"]
    assert weaviate["entrypoint"][:2] == ["/bin/sh", "-c"]
    assert "/v1/.well-known/ready" in " ".join(weaviate["healthcheck"]["test"])


def test_vectorizer_service(config):
    from imagebind_vectorizer.cli import build_parser
    from imagebind_vectorizer.settings import Settings

    variant, cfg = config
    vectorizer = cfg["services"]["vectorizer"]
    assert build_parser().parse_args(vectorizer["command"]).command == "serve"
    settings = Settings.load(env=vectorizer["environment"])
    assert settings.host == "0.0.0.0" and settings.cache_dir == "/models"
    assert {v["target"]: v.get("read_only", False) for v in vectorizer["volumes"]} == {
        "/models": True, "/etc/imagebind-vectorizer/api-keys": True, "/spool": False}
    # segment uploads (up to 4 GiB each) go to a volume on disk, not into the in-memory tmpfs /tmp
    assert settings.segment_spool_dir == "/spool" and "/tmp" in vectorizer["tmpfs"]
    assert settings.api_key_file == "/etc/imagebind-vectorizer/api-keys/api-keys" and settings.api_keys is None
    assert vectorizer["read_only"] is True and vectorizer["cap_drop"] == ["ALL"]
    assert [p["target"] for p in vectorizer["ports"]] == [SERVER_HTTP_PORT, SERVER_GRPC_PORT]
    assert all(p["host_ip"] == "127.0.0.1" for p in vectorizer["ports"])
    grace = float(vectorizer["environment"]["IMAGEBIND_SHUTDOWN_GRACE_S"])
    assert _seconds(vectorizer["stop_grace_period"]) > grace
    if variant == "gpu":
        assert settings.device == "cuda" and settings.dtype == "bfloat16"
        assert vectorizer["build"]["dockerfile"] == "docker/Dockerfile.cuda"
        assert vectorizer["image"].endswith("-cuda")
        (device,) = vectorizer["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
    else:
        assert settings.device == "cpu"
        assert vectorizer["build"]["dockerfile"] == "docker/Dockerfile"
        assert "deploy" not in vectorizer
    assert os.path.realpath(vectorizer["build"]["context"]) == str(REPO)


def _seconds(duration: str) -> float:
    total = 0.0
    for amount, unit in re.findall(r"([\d.]+)(ms|s|m|h)", duration):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def test_model_download_is_the_charts_init_container(config):
    from imagebind_vectorizer.settings import Settings

    _variant, cfg = config
    service = cfg["services"]["model-download"]
    assert service.get("entrypoint") is None, "the image's ENTRYPOINT (imagebind-vectorizer) runs"
    assert service["command"] == checkpoint_command()
    assert {v["target"]: v.get("read_only", False) for v in service["volumes"]} == {"/models": False}
    Settings.load(env=service["environment"])


def test_healthcheck_matches_the_images_and_works():
    from tests.deploy.dockerfile import parse

    raw = load_yaml(DOCKER / "compose.yaml")["services"]["vectorizer"]["healthcheck"]["test"]
    assert raw[0] == "CMD"
    image_check = parse(DOCKER / "Dockerfile").effective("final", "HEALTHCHECK").exec_form()
    assert raw[1:] == image_check
    for status, healthy in ((200, True), (503, False)):
        with serve_status(status) as port:
            result = subprocess.run([sys.executable, *raw[2:]], env={"IMAGEBIND_PORT": str(port)},
                                    capture_output=True, timeout=30)
        assert (result.returncode == 0) is healthy


def test_interpolation(tmp_path):
    cfg = compose_config("cpu", {"IMAGEBIND_MODALITIES": "text,vision", "BIND_ADDRESS": "0.0.0.0",
                                 "WEAVIATE_VERSION": "1.39.1"})
    assert cfg["services"]["vectorizer"]["environment"]["IMAGEBIND_MODALITIES"] == "text,vision"
    assert cfg["services"]["weaviate"]["image"].endswith(":1.39.1")
    assert all(p["host_ip"] == "0.0.0.0" for p in cfg["services"]["weaviate"]["ports"])


def _unescape(text: str) -> str:
    """What a container receives: compose turns `$$` into `$` (and `docker-compose config` keeps `$$`)."""
    return text.replace("$$", "$")


def test_weaviate_sends_the_generated_key(tmp_path):
    """The api-key service's command writes a key (and keeps it on the next `up`); Weaviate's entrypoint
    script, run by a real sh with a stand-in `weaviate` on PATH, exports BIND_INFERENCE_API with that key
    as the URL's password and passes the command line on; the vectorizer's settings accept the file."""
    from imagebind_vectorizer.cli import main
    from imagebind_vectorizer.server.auth import KeyRing

    cfg = compose_config("cpu")
    services = cfg["services"]
    key_path = services["vectorizer"]["environment"]["IMAGEBIND_API_KEY_FILE"]
    command = services["api-key"]["command"]
    assert command == ["api-key", "--file", key_path]
    local_key = tmp_path / "api-keys" / "api-keys"
    assert main([*command[:-1], str(local_key)]) == 0
    key = local_key.read_text().strip()
    assert oct(local_key.stat().st_mode & 0o777) == "0o600"
    assert main([*command[:-1], str(local_key)]) == 0 and local_key.read_text().strip() == key, "kept on re-run"
    assert KeyRing(file=local_key).matches(key)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "weaviate"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$BIND_INFERENCE_API" "$@"\n')
    fake.chmod(0o755)
    weaviate = services["weaviate"]
    argv = [_unescape(part) for part in weaviate["entrypoint"]] + weaviate["command"]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "IMAGEBIND_API_KEY_FILE": str(local_key)}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    url, *args = result.stdout.splitlines()
    vectorizer_port = services["vectorizer"]["environment"]["IMAGEBIND_PORT"]
    assert url == f"http://weaviate:{key}@vectorizer:{vectorizer_port}"  # no trailing slash
    assert args == weaviate["command"]
    assert {v["target"] for v in weaviate["volumes"] if v["source"] == "api-key"} == {os.path.dirname(key_path)}

    missing = subprocess.run(argv, env={**env, "IMAGEBIND_API_KEY_FILE": str(tmp_path / "absent")},
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode != 0 and not missing.stdout, "no key: Weaviate must not start without one"
