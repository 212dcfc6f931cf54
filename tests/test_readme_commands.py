"""Every shell command the READMEs show is run here as far as this machine allows, so no README can
drift from the code again:

* the one-host recipe and its command-line examples run as written, end to end
  (tests/e2e/test_readme_recipe.py);
* `.venv/bin/...` lines run as written (when `make` has made .venv);
* `docker compose ... up` runs as `docker-compose ... config` (no Docker engine here), `helm install`
  as `helm template` with the same chart, values and --set flags;
* every other `imagebind-vectorizer ...` line is parsed by the real command-line parser, every
  `make X` names a Makefile target, files named by `docker build -f` and pytest options exist;
* a command this file does not know fails the test, so a new kind of README command gets a rule.

The compose snippet in README.md must also agree with docker/compose.yaml where they overlap, and
every text states the same MODULES_CLIENT_TIMEOUT."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from imagebind_vectorizer.cli import build_parser
from tests.deploy.helpers import helm, run, tool
from tests.e2e.test_readme_recipe import recipe_blocks

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "docker" / "README.md", ROOT / "helm" / "imagebind-vectorizer" / "README.md"]

#: commands that need what this machine lacks (a Docker engine, a cluster, the network), and why
NOT_HERE = {
    "docker build": "needs a Docker engine (tests/deploy lints the Dockerfiles with hadolint)",
    "docker run": "needs a Docker engine (tests/test_ports.py checks its -p ports)",
    "docker logs": "needs a Docker engine",
    "docker inspect": "needs a Docker engine",
    "kubectl": "needs a cluster",
    "helm test": "needs a cluster",
    "helm repo": "needs the network (Weaviate's chart repository)",
    "curl": "asks a running deployment",
    "pip install": "would install into the shared test environment",
    "pytest tests/e2e": "reruns the end-to-end suite against a Weaviate of your own",
}


def shell_blocks(path: Path) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", path.read_text(), re.S | re.M)


def commands(block: str) -> list[str]:
    """One string per command: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    found = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            found.append(line)
    return found


def words(command: str) -> list[str]:
    """shlex words, with <placeholders> (which no one can run) as one word each."""
    return shlex.split(re.sub(r"<[^>]*>", "PLACEHOLDER", command.rstrip("&").strip()))


ALL = [(path, block) for path in READMES for block in shell_blocks(path)]
RECIPE = set(recipe_blocks())
CHECKED = [(path, command) for path, block in ALL if block not in RECIPE for command in commands(block)]


def test_the_readmes_have_commands_to_check() -> None:
    assert len(RECIPE) == 4 and len(CHECKED) > 25


def _id(case: tuple[Path, str]) -> str:
    return f"{case[0].relative_to(ROOT)}: {case[1][:60]}"


@pytest.mark.parametrize("case", CHECKED, ids=[_id(c) for c in CHECKED])
def test_each_readme_command_runs_or_is_checked(case: tuple[Path, str]) -> None:
    path, command = case
    argv = words(command)
    if argv[0] == "imagebind-vectorizer":
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"{path.name}: `{command}` does not parse (exit {exc.code})")
    elif argv[0] == "make":
        targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
        assert set(a for a in argv[1:] if "=" not in a) <= targets, command
    elif argv[0].startswith(".venv/bin/"):
        _run_in_checkout(argv)
    elif argv[:2] == ["docker", "compose"]:
        _compose_config(argv)
    elif argv[:2] == ["helm", "install"] and argv[3].startswith("helm/"):
        _helm_template(argv)
    else:
        reason = next((why for prefix, why in NOT_HERE.items() if command.startswith(prefix)), None)
        if reason is None and "$(docker " in command:
            reason = "reads from a running container (needs a Docker engine)"
        if reason is None and argv[:2] == ["helm", "install"]:
            reason = "installs a chart from a repository (needs the network)"
        assert reason, f"{path.name}: no rule for `{command}`: add one to tests/test_readme_commands.py"
        if argv[:2] == ["docker", "build"]:
            assert (ROOT / argv[argv.index("-f") + 1]).is_file(), command
        if argv[0] == "pytest":
            options = set(re.findall(r'addoption\("(--[a-z-]+)"', (ROOT / "tests/e2e/conftest.py").read_text()))
            assert {a for a in argv if a.startswith("--")} <= options, command


def _run_in_checkout(argv: list[str]) -> None:
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv here: `make` creates it (tests/test_setup.py covers the same without make)")
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")})
    assert result.returncode == 0, result.stderr
    assert "imagebind-vectorizer" in result.stdout


def _compose_config(argv: list[str]) -> None:
    files, rest = [], argv[2:]
    while rest[:1] == ["-f"]:  # the files come before the subcommand (`logs -f` is "follow")
        files.append(rest[1])
        rest = rest[2:]
    assert files, argv
    args = [tool("docker-compose")] + [x for f in files for x in ("-f", str(ROOT / f))] + ["config", "--quiet"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEBIND_", "WEAVIATE_", "VECTORIZER_"))}
    result = run(args, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def _helm_template(argv: list[str]) -> None:
    release, chart, rest = argv[2], argv[3], argv[4:]
    for i in range(len(rest) - 1, 0, -1):  # a `--set key=<placeholder>` is for the reader to fill in
        if rest[i - 1] == "--set" and rest[i].endswith("=PLACEHOLDER"):
            del rest[i - 1:i + 1]
    rest = [a for a in rest if a != "--create-namespace"]
    result = helm("template", release, str(ROOT / chart), *[str(ROOT / a) if a.startswith("helm/") else a
                                                             for a in rest])
    assert result.returncode == 0, result.stderr
    assert "kind: Deployment" in result.stdout


def test_every_helm_install_of_our_chart_names_a_registry() -> None:
    """The chart's default image is a local build (imagebind-vectorizer:<version>); a cluster pulls from a
    registry, so each install command in the READMEs says which."""
    installs = [c for _, c in CHECKED if c.startswith("helm install") and words(c)[3].startswith("helm/")]
    assert len(installs) >= 3
    for command in installs:
        assert "image.repository=" in command, command


def test_the_readme_compose_snippet_agrees_with_the_compose_file() -> None:
    text = (ROOT / "README.md").read_text()
    snippet = yaml.safe_load(re.search(r"^```yaml\n(services:.*?)^```", text, re.S | re.M).group(1))
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())

    def value(raw: object) -> str:  # "${NAME:-default}" -> "default"
        return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(raw))

    compared = 0
    for service, spec in snippet["services"].items():
        theirs = compose["services"][service].get("environment") or {}
        for key, raw in (spec.get("environment") or {}).items():
            if key in theirs:
                assert value(raw) == value(theirs[key]), f"{service}.{key}: README {raw}, compose {theirs[key]}"
                compared += 1
    assert compared >= 6


def test_every_text_gives_weaviate_the_same_client_timeout() -> None:
    texts = [*READMES, ROOT / "docker" / "compose.yaml", *sorted((ROOT / "helm").rglob("*.yaml")),
             *sorted((ROOT / "helm").rglob("*.txt"))]
    found = {(p.relative_to(ROOT), m) for p in texts
             for m in re.findall(r"MODULES_CLIENT_TIMEOUT[=:]\s*(?:\$\{\w+:-)?(\d+s)", p.read_text())}
    assert len(found) >= 5 and len({m for _, m in found}) == 1, sorted(found)
