"""The Dockerfiles: hadolint, and what the built image will do, read from the Dockerfile itself."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from imagebind_vectorizer.settings import SERVER_GRPC_PORT, SERVER_HTTP_PORT
from tests.deploy.dockerfile import dockerignore_excludes, parse
from tests.deploy.helpers import DOCKER, REPO, run, tool
from tests.deploy.servers import serve_status

pytestmark = pytest.mark.deploy

DOCKERFILES = {"cpu": DOCKER / "Dockerfile", "cuda": DOCKER / "Dockerfile.cuda"}
FINAL = "final"


@pytest.fixture(params=sorted(DOCKERFILES), ids=sorted(DOCKERFILES))
def dockerfile(request):
    return parse(DOCKERFILES[request.param])


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _requirement(name: str) -> SpecifierSet:
    for requirement in _pyproject()["dependencies"]:
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", requirement)
        if match and match.group(1).lower() == name:
            return SpecifierSet(match.group(2))
    raise AssertionError(f"{name} is not a dependency in pyproject.toml")


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_passes(name):
    result = run([tool("hadolint"), "--no-color", str(DOCKERFILES[name])])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_problems(tmp_path):
    """Control: the linter in use does flag an unpinned, cache-keeping Dockerfile."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    result = run([tool("hadolint"), "--no-color", str(bad)])
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3013" in result.stdout


def test_bases_pinned_by_tag_and_digest(dockerfile):
    stage_names = {t.name for t in dockerfile.stages}
    external = [s.base for s in dockerfile.stages if dockerfile.resolve(s.base) not in stage_names]
    assert external, "no external base image"
    for base in external:
        image = dockerfile.resolve(base)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image
        assert image.startswith("python:3.11"), image  # the project's Python


def test_multi_stage_with_a_clean_runtime(dockerfile):
    builder, runtime = dockerfile.stage("builder"), dockerfile.stage("runtime")
    assert dockerfile.resolve(builder.base) == dockerfile.resolve(runtime.base), \
        "the venv is copied between stages: both must have the same Python"
    copies = [i.args for i in runtime.all("COPY")]
    assert any(a.startswith("--from=builder /opt/venv /opt/venv") for a in copies), copies
    for instruction in runtime.all("RUN"):
        assert "pip install" not in instruction.args, "dependencies belong in the builder stage"
        assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", instruction.args), instruction.args
        assert "apt-get install" not in instruction.args, instruction.args
    # The project and its dependencies are installed in the builder, the dependencies before the code.
    runs = [i.args for i in builder.all("RUN")]
    assert any("-r /tmp/requirements.txt" in r for r in runs) and any(r.startswith("pip install") or
                                                                      "pip install --no-cache-dir --no-deps" in r
                                                                      for r in runs)


@pytest.mark.parametrize("bake", ["0", "1"])
def test_final_image_runs_the_server_as_non_root(dockerfile, bake):
    from imagebind_vectorizer.cli import build_parser

    args = {"BAKE_WEIGHTS": bake}
    entrypoint = dockerfile.effective(FINAL, "ENTRYPOINT", args).exec_form()
    cmd = dockerfile.effective(FINAL, "CMD", args).exec_form()
    scripts = _pyproject()["scripts"]
    assert entrypoint == ["imagebind-vectorizer"] and "imagebind-vectorizer" in scripts
    parsed = build_parser().parse_args(cmd)
    assert parsed.command == "serve" and parsed.handler.__module__ == "imagebind_vectorizer.cli.serve"

    user = dockerfile.effective(FINAL, "USER", args).args
    assert user.split(":")[0] not in ("0", "root") and user.split(":")[0].isdigit()
    exposed = {p for i in (s for st in dockerfile.chain(FINAL, args) for s in st.all("EXPOSE"))
               for p in i.args.split()}
    assert {str(SERVER_HTTP_PORT), str(SERVER_GRPC_PORT)} <= exposed
    env = dockerfile.env(FINAL, args)
    assert env["IMAGEBIND_HOST"] == "0.0.0.0"
    assert env["IMAGEBIND_PORT"] == str(SERVER_HTTP_PORT) and env["IMAGEBIND_GRPC_PORT"] == str(SERVER_GRPC_PORT)
    volume = dockerfile.effective(FINAL, "VOLUME", args).exec_form()
    assert env["IMAGEBIND_CACHE"] in volume
    if bake == "1":
        assert env["IMAGEBIND_CHECKPOINT"].startswith("/opt/imagebind/weights/")
    else:
        assert "IMAGEBIND_CHECKPOINT" not in env
    from imagebind_vectorizer.settings import Settings

    settings = Settings.load(env=env)
    assert settings.host == "0.0.0.0" and settings.cache_dir == env["IMAGEBIND_CACHE"]


def test_weights_are_not_baked_by_default(dockerfile):
    assert dockerfile.global_args["BAKE_WEIGHTS"] == "0"
    assert dockerfile.stages[-1].name == FINAL
    assert dockerfile.resolve(dockerfile.stages[-1].base) == "runtime-weights-0"
    assert not dockerfile.stage("runtime-weights-0").instructions  # nothing added
    baked = dockerfile.stage("runtime-weights-1")
    assert any(i.args.startswith("--from=weights") for i in baked.all("COPY"))


def test_healthcheck_asks_readiness(dockerfile):
    healthcheck = dockerfile.effective(FINAL, "HEALTHCHECK")
    command = healthcheck.exec_form()
    assert command[:2] == ["python", "-c"] and "/.well-known/ready" in command[2]
    options = healthcheck.options()
    assert {"interval", "timeout", "start-period", "retries"} <= options.keys()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (204, True), (503, False), (None, False)])
def test_healthcheck_command_works(status, healthy):
    """Run the HEALTHCHECK program against a loopback server answering `status` (None: nothing listens)."""
    command = parse(DOCKERFILES["cpu"]).effective(FINAL, "HEALTHCHECK").exec_form()
    assert command == parse(DOCKERFILES["cuda"]).effective(FINAL, "HEALTHCHECK").exec_form()
    with serve_status(status) as port:
        result = subprocess.run([sys.executable, *command[1:]], env={"IMAGEBIND_PORT": str(port)},
                                capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr


def test_torch_sets_match_the_project(dockerfile):
    builder = dockerfile.stage("builder")
    args = {}
    for instruction in builder.all("ARG"):
        key, _, value = instruction.args.partition("=")
        args[key] = value
    torch, audio = Version(args["TORCH_VERSION"]), Version(args["TORCHAUDIO_VERSION"])
    assert torch in _requirement("torch") and audio in _requirement("torchaudio")
    assert Version(args["TORCHVISION_VERSION"]).minor == torch.minor + 15  # torchvision 0.(N+15) <-> torch 2.N
    if dockerfile.path.name == "Dockerfile":
        # CPU-only builds come from PyTorch's CPU index, as one set built together.
        assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
        assert (torch.major, torch.minor) == (audio.major, audio.minor)
        assert "--no-deps" in next(r.args for r in builder.all("RUN") if "TORCH_INDEX_URL" in r.args)
    else:
        assert args["TORCH_INDEX_URL"] == "https://pypi.org/simple"
        assert dockerfile.env(FINAL)["IMAGEBIND_DEVICE"] == "cuda"


def test_dockerignore_sends_only_what_the_build_copies():
    excluded = dockerignore_excludes(REPO / ".dockerignore")
    needed = ["pyproject.toml", "scripts/python_deps.py"]
    needed += [str(p.relative_to(REPO)) for p in (REPO / "imagebind_vectorizer").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts]
    missing = [p for p in needed if excluded(p)]
    assert not missing, f"the Docker build needs {missing}"
    for path in ["tests/conftest.py", ".git/HEAD", "helm/imagebind-vectorizer/values.yaml", "Makefile",
                 "imagebind_vectorizer/__pycache__/x.pyc", "imagebind_huge.pth", ".checkpoints/imagebind_huge.pth",
                 "scripts/deploy_tools.sh"]:
        assert excluded(path), f"{path} would be sent to the Docker daemon"
    # Every COPY source in the builder exists and is sent.
    for name in DOCKERFILES.values():
        for instruction in parse(name).stage("builder").all("COPY"):
            *sources, _dest = instruction.args.split()
            for source in sources:
                if source != ".":
                    assert (REPO / source).exists() and not excluded(source), source


def test_bake_weights_runs_the_charts_checkpoint_command(dockerfile):
    from tests.deploy.helpers import checkpoint_command

    run_args = next(r.args for r in dockerfile.stage("weights").all("RUN"))
    assert run_args.split() == ["imagebind-vectorizer", *checkpoint_command()]
