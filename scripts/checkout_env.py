"""This checkout's own environment: `.venv` in the checkout, a few kilobytes, layered over the shared
environment in the build cache (the gigabytes of torch, weaviate-client, ...).

The shared environment serves every checkout whose dependency lists hash the same (git worktrees, a
second clone), so the package itself cannot be installed into it: an editable install would point
at one checkout, a copy would go stale as soon as anyone edits. Instead each checkout gets a tiny
virtual environment of its own (same interpreter as the shared one) in which
  * a .pth file puts this checkout on sys.path (edits take effect at once, as with `pip install -e`),
  * a second .pth adds the shared site-packages (with their own .pth files, via site.addsitedir),
  * `bin/imagebind-vectorizer` (each [project.scripts] entry of pyproject.toml) runs this checkout's
    CLI, and a dist-info names the distribution, so `importlib.metadata` knows it.
So `.venv/bin/imagebind-vectorizer ...`, `source .venv/bin/activate` (or `make shell`) and
`.venv/bin/python -m imagebind_vectorizer` work from any folder and always run this checkout.

Usage: python3 scripts/checkout_env.py SHARED_VENV [--checkout DIR] [--dest DIR]
Rewrites only what differs; prints a line when it created or changed something."""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

CHECKOUT_PTH = "imagebind_vectorizer-checkout.pth"  # sorts before SHARED_PTH: the checkout wins
SHARED_PTH = "shared-environment.pth"


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3.*/site-packages"))
    if len(found) != 1:
        raise SystemExit(f"error: expected one lib/python3.*/site-packages in {venv}, found {len(found)}")
    return found[0]


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    if path.is_file() and path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)  # atomic: a concurrent `make` never sees half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


def project_version(checkout: Path, pyproject: dict) -> str:
    """pyproject's version: stated there, or (dynamic) the string constant its setuptools `attr` names,
    read from the module's source as setuptools itself does, without importing it."""
    if "version" in pyproject["project"]:
        return pyproject["project"]["version"]
    module, _, name = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"].rpartition(".")
    source = checkout / (module.replace(".", "/") + ".py")
    for node in ast.parse(source.read_text(), str(source)).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise SystemExit(f"error: {source} does not assign {name}, which pyproject.toml names as the version")


def ensure(shared: Path, checkout: Path, dest: Path) -> bool:
    """Create or update the layered environment; True when anything changed."""
    shared_python = shared / "bin" / "python"
    changed = False
    python = dest / "bin" / "python"
    if not python.exists() or not (dest / "pyvenv.cfg").is_file():
        # The shared environment's interpreter makes the venv, so both run the same base Python.
        subprocess.run([str(shared_python), "-m", "venv", "--without-pip", "--clear", str(dest)], check=True)
        changed = True
    ours, theirs = site_packages(dest), site_packages(shared)
    if ours.parent.name != theirs.parent.name:
        raise SystemExit(f"error: {dest} runs {ours.parent.name} but {shared} is {theirs.parent.name}; "
                         f"remove {dest} and run make again")
    changed |= write_if_changed(ours / CHECKOUT_PTH, f"{checkout}\n")
    changed |= write_if_changed(ours / SHARED_PTH, f"import site; site.addsitedir({str(theirs)!r})\n")

    pyproject = tomllib.loads((checkout / "pyproject.toml").read_text())
    project = pyproject["project"]
    name, version = project["name"], project_version(checkout, pyproject)
    scripts = project.get("scripts", {})
    dist_info = ours / f"{name.replace('-', '_')}-{version}.dist-info"
    for stale in ours.glob(f"{name.replace('-', '_')}-*.dist-info"):
        if stale != dist_info:
            for file in stale.iterdir():
                file.unlink()
            stale.rmdir()
            changed = True
    changed |= write_if_changed(dist_info / "METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    changed |= write_if_changed(dist_info / "INSTALLER", "scripts/checkout_env.py\n")
    changed |= write_if_changed(dist_info / "entry_points.txt", "[console_scripts]\n" + "".join(
        f"{script} = {target}\n" for script, target in scripts.items()))
    changed |= write_if_changed(dist_info / "direct_url.json",
                                f'{{"url": "{checkout.as_uri()}", "dir_info": {{"editable": true}}}}\n')
    for script, target in scripts.items():
        module, _, function = target.partition(":")
        changed |= write_if_changed(dest / "bin" / script, (
            f"#!{python}\n"
            f"# {script}: this checkout's command ({checkout}), written by scripts/checkout_env.py\n"
            "import sys\n"
            f"from {module} import {function}\n"
            # the guard: worker processes started with spawn/forkserver import this file again
            "if __name__ == '__main__':\n"
            f"    sys.exit({function}())\n"), mode=0o755)
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shared", type=Path, help="the shared environment (the Makefile's VENV)")
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--dest", type=Path, default=None, help="default: CHECKOUT/.venv")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    dest = (args.dest or checkout / ".venv").absolute()
    if ensure(args.shared.resolve(), checkout, dest):
        scripts = tomllib.loads((checkout / "pyproject.toml").read_text())["project"].get("scripts", {})
        for script in scripts:
            print(f"== this checkout's command: {dest / 'bin' / script}  (on PATH in `make shell`, or after "
                  f"`source {dest / 'bin' / 'activate'}`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
