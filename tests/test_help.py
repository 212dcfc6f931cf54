"""`--help` of every command is instant: no torch, no model, no progress-bar library, well under a
second of CPU for the whole process (interpreter start included)."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from imagebind_vectorizer.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
#: well under a second; a process that imports torch needs several
CPU_BUDGET_S = 0.8
PROBE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("\\nLOADED " + " ".join(sorted(
    m for m in sys.modules if m.split(".")[0] in ("torch", "tqdm", "PIL", "av", "grpc", "aiohttp")))))
from imagebind_vectorizer.cli import main
main(sys.argv[1:])
"""


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, (*prefix, name))
    return found


COMMANDS = commands(build_parser())


def test_every_command_is_listed() -> None:
    assert len(COMMANDS) >= 12 and ("collection", "create") in COMMANDS and ("demo",) in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "(top)")
def test_help_loads_no_heavy_library_and_takes_well_under_a_second_of_cpu(command: tuple[str, ...]) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-c", PROBE, *command, "--help"], cwd="/", capture_output=True,
                            text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0, result.stderr
    assert "usage: imagebind-vectorizer" in result.stdout
    loaded = result.stderr.rsplit("LOADED", 1)[1].split()
    assert loaded == [], f"--help imported {loaded}"
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < CPU_BUDGET_S, f"{' '.join(command)} --help took {cpu:.2f} s of CPU"
