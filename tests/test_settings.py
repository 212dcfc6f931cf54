"""Settings are a leaf: reading them (and every command's --help) loads no torch and no model code;
each environment variable is read in one place; every command's settings flags are generated from
the declarations, never re-declared; the connection settings follow flag > environment > default."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imagebind_vectorizer.cli import build_parser
from imagebind_vectorizer.errors import ConfigError
from imagebind_vectorizer.settings import ConnectionSettings, Settings, add_arguments

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "imagebind_vectorizer"
DECLARED = {f.metadata["env"]: cls for cls in (Settings, ConnectionSettings) for f in dataclasses.fields(cls)}


def _modules_after(code: str) -> set[str]:
    probe = textwrap.dedent(code) + "\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return set(result.stdout.split())


def test_importing_settings_loads_no_torch_and_no_model() -> None:
    loaded = _modules_after("import imagebind_vectorizer.settings")
    assert "torch" not in loaded
    assert not {m for m in loaded if m.startswith(("imagebind_vectorizer.model", "imagebind_vectorizer.runtime"))}


def test_the_package_and_every_commands_help_load_no_torch() -> None:
    loaded = _modules_after("""
        import contextlib, io
        import imagebind_vectorizer
        from imagebind_vectorizer.cli import build_parser
        parser = build_parser()
        for command in ("embed", "serve", "collection", "ingest", "search", "classify", "demo", "download"):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                parser.parse_args([command, "--help"])
    """)
    assert "torch" not in loaded


def test_the_embedder_and_the_kinds_still_import_from_their_old_homes_and_lazily_from_the_top() -> None:
    from imagebind_vectorizer import Embedder, kinds, modality
    from imagebind_vectorizer.embedder import Embedder as OldHome
    from imagebind_vectorizer.runtime.embedder import Embedder as Home

    assert Embedder is OldHome is Home
    assert (modality.InputKind, modality.ENCODERS, modality.parse_encoders) == (
        kinds.InputKind, kinds.ENCODERS, kinds.parse_encoders)


def _environment_reads(path: Path) -> list[tuple[str, int]]:
    """(variable, line) for os.environ.get("X"), os.environ["X"], os.getenv("X") and env.get("X")."""
    reads = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "getenv") \
                and node.args and isinstance(node.args[0], ast.Constant):
            key = node.args[0].value
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "environ" and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        if isinstance(key, str) and key.isupper() and "_" in key:
            reads.append((key, node.lineno))
    return reads


def test_each_environment_variable_is_read_in_one_place() -> None:
    readers: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for variable, _ in _environment_reads(path):
            readers.setdefault(variable, set()).add(str(path.relative_to(ROOT)))
    twice = {v: sorted(paths) for v, paths in readers.items() if len(paths) > 1}
    assert not twice, twice
    declared_elsewhere = {v: paths for v, paths in readers.items()
                          if v in DECLARED and paths != {"imagebind_vectorizer/settings.py"}}
    assert not declared_elsewhere, declared_elsewhere
    # the declared variables themselves are read by Settings.load from the declarations, not by name
    assert "IMAGEBIND_CACHE" in DECLARED and "IMAGEBIND_CACHE" not in readers


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return found


def test_every_settings_flag_of_every_command_is_generated_from_the_declarations() -> None:
    """A flag whose destination is a setting must be the declared flag, default None (so the
    environment is not shadowed) and say which variable it overrides, unless a command narrows it."""
    fields = {f.name: f for cls in (Settings, ConnectionSettings) for f in dataclasses.fields(cls)}
    checked = 0
    for command, parser in _subparsers(build_parser()).items():
        for action in parser._actions:
            if action.dest not in fields or not action.option_strings:
                continue
            f = fields[action.dest]
            declared = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            assert declared in action.option_strings, (command, action.option_strings)
            assert action.default is None, (command, declared, action.default)
            assert f"[env {f.metadata['env']}" in (action.help or "") or (command, declared) == (
                "demo", "--weaviate-url"), (command, declared, action.help)
            checked += 1
    assert checked > 60


def test_download_keeps_its_short_flags() -> None:
    args = build_parser().parse_args(["download", "--url", "http://x/y.pth", "--sha256", "ab", "--cache-dir", "/c"])
    settings = Settings.load(args, env={})
    assert (settings.checkpoint_url, settings.checkpoint_sha256, settings.cache_dir) == ("http://x/y.pth", "ab", "/c")


@pytest.mark.parametrize("command", [["collection", "show", "C"], ["ingest", "D", "--collection", "C"],
                                     ["search", "--collection", "C", "--text", "t"],
                                     ["classify", "--labels", "a,b", "--text", "t"]])
def test_connection_settings_flag_over_environment_over_default(command: list[str]) -> None:
    parser = build_parser()
    env = {"WEAVIATE_URL": "http://db:1", "WEAVIATE_GRPC_PORT": "2", "IMAGEBIND_SERVER_URL": "http://vec:3",
           "IMAGEBIND_CLIENT_TIMEOUT_S": "4.5"}
    from_env = ConnectionSettings.load(parser.parse_args(command), env=env)
    assert from_env.timeout == 4.5 and from_env.server == "http://vec:3"
    if command[0] != "classify":
        assert (from_env.weaviate_url, from_env.weaviate_grpc_port) == ("http://db:1", 2)
        flagged = ConnectionSettings.load(parser.parse_args([*command, "--weaviate-url", "http://flag:5"]), env=env)
        assert flagged.weaviate_url == "http://flag:5"
    assert ConnectionSettings.load(parser.parse_args(command), env={}) == ConnectionSettings()
    with pytest.raises(ConfigError, match="WEAVIATE_GRPC_PORT"):
        ConnectionSettings.load(parser.parse_args(command), env={"WEAVIATE_GRPC_PORT": "many"})


def test_add_arguments_by_name_keeps_declared_groups() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, names=("dtype",), aliases={"dtype": ("--precision",)}, helps={"dtype": "narrower"})
    args = parser.parse_args(["--precision", "bfloat16"])
    assert Settings.load(args, env={}).dtype == "bfloat16"
    with pytest.raises(SystemExit):
        parser.parse_args(["--dtype", "float64"])


def test_the_grpc_address_derived_from_server_never_carries_its_credentials() -> None:
    from imagebind_vectorizer.settings import ConnectionSettings

    address = ConnectionSettings.load(env={}, server="http://weaviate:SECRETKEY0123456789@vec.example:8011")
    assert address.server_grpc_address() == "vec.example:50061"
    assert ConnectionSettings.load(env={}, server="https://[::1]:8011").server_grpc_address() == "[::1]:50061"
