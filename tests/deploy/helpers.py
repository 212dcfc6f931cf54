"""Helpers for the deployment tests: where the tools are, rendering the chart, parsing files.

The tools (helm, kubernetes-validate, hadolint, docker-compose) come from `make deploy-tools`
(scripts/deploy_tools.sh), cached outside the checkout. `make` exports IBV_DEPLOY_TOOLS; when it is set
and a tool is missing the tests fail. Run directly with pytest and without the tools, they are skipped
with the command that installs them."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
CHART = REPO / "helm" / "imagebind-vectorizer"
EXAMPLES = CHART / "examples"
RELEASE = "imagebind-vectorizer"
NAMESPACE = "imagebind"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the validator knows.
KUBE_VERSIONS = ("1.27.0", "1.37.0")
#: Chart values files: the defaults and each example of the chart itself.
VALUES_CASES = {
    "default": (),
    "gpu": (EXAMPLES / "values-gpu.yaml",),
    "cpu-autoscale": (EXAMPLES / "values-cpu-autoscale.yaml",),
    "secured": (EXAMPLES / "values-secured.yaml",),
}
#: Settings the chart derives from other values instead of taking them in `config`.
CHART_MANAGED_ENV = {"IMAGEBIND_HOST", "IMAGEBIND_PORT", "IMAGEBIND_GRPC_PORT", "IMAGEBIND_CACHE",
                     "IMAGEBIND_SEGMENT_SPOOL_DIR",  # the emptyDir the chart sizes for segment uploads
                     # keys and certificates: files mounted from Secrets (auth, tls), never ConfigMap values
                     "IMAGEBIND_API_KEYS", "IMAGEBIND_API_KEY_FILE", "IMAGEBIND_METRICS_API_KEYS",
                     "IMAGEBIND_METRICS_API_KEY_FILE", "IMAGEBIND_TLS_CERT_FILE", "IMAGEBIND_TLS_KEY_FILE",
                     "IMAGEBIND_TLS_CLIENT_CA_FILE"}


def _tools_dir() -> Path | None:
    env = os.environ.get("IBV_DEPLOY_TOOLS")
    if env:
        return Path(env)
    try:
        out = subprocess.run(["bash", str(REPO / "scripts" / "deploy_tools.sh"), "--bin-dir"], check=True,
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out else None


def tool(name: str) -> str:
    """Path of a cached tool; fails under `make` (IBV_DEPLOY_TOOLS set) when it is missing, else skips."""
    directory = _tools_dir()
    path = directory / name if directory else None
    if path is not None and os.access(path, os.X_OK):
        return str(path)
    message = f"{name} not installed: run `make deploy-tools` (scripts/deploy_tools.sh)"
    if os.environ.get("IBV_DEPLOY_TOOLS"):
        pytest.fail(message)
    pytest.skip(message)


def run(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def helm_env(tmp: Path) -> dict[str, str]:
    """Keep helm's config, cache and data out of $HOME; it needs no network for `template`/`lint`."""
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(tmp / var.lower())
    return env


_HELM_HOME: list[tempfile.TemporaryDirectory[str]] = []


def _helm_tmp() -> Path:
    """helm's cache, config and data folders for this session (removed by `remove_helm_home`)."""
    if not _HELM_HOME:
        _HELM_HOME.append(tempfile.TemporaryDirectory(prefix="ibv-helm-"))
    return Path(_HELM_HOME[0].name)


def remove_helm_home() -> None:
    while _HELM_HOME:
        _HELM_HOME.pop().cleanup()


def helm(*args: str) -> subprocess.CompletedProcess:
    return run([tool("helm"), *args], env=helm_env(_helm_tmp()))


@functools.cache
def render_text(values: tuple[Path, ...] = (), sets: tuple[str, ...] = (), kube_version: str = KUBE_VERSIONS[-1],
                release: str = RELEASE, namespace: str = NAMESPACE) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version]
    for file in values:
        args += ["--values", str(file)]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def render(values: tuple[Path, ...] = (), sets: tuple[str, ...] = (), **kwargs) -> list[dict]:
    """The rendered manifests, parsed (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(render_text(values, sets, **kwargs)) if doc]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def kinds(docs: list[dict]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def container(deployment: dict, name: str = "vectorizer", init: bool = False) -> dict:
    spec = deployment["spec"]["template"]["spec"]
    containers = spec.get("initContainers" if init else "containers", [])
    return next(c for c in containers if c["name"] == name)


def checkpoint_command() -> list[str]:
    """What the chart's fetch-checkpoint init container gives the image's entrypoint (imagebind-vectorizer);
    compose's model-download service and the Dockerfiles' BAKE_WEIGHTS step run the same command."""
    return container(find(render(), "Deployment"), "fetch-checkpoint", init=True)["args"]


def settings_env_names() -> set[str]:
    from imagebind_vectorizer.settings import Settings

    return {f.metadata["env"] for f in dataclasses.fields(Settings)}


def render_notes(tmp: Path, *args: str) -> str:
    """NOTES.txt rendered with the chart's values and `args` (copied in as a template, since `helm
    template` skips NOTES.txt)."""
    import shutil

    chart = tmp / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "zz-notes.yaml").write_text(
            '{{- define "notes-under-test" -}}\n' + notes + '\n{{- end -}}\n'
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
            '  notes: {{ include "notes-under-test" . | toJson }}\n')
    result = helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, "--show-only",
                  "templates/zz-notes.yaml", *args)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["data"]["notes"]


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def values_schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())
