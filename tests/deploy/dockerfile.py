"""A small Dockerfile reader (instructions, stages, exec-form arguments) and a .dockerignore matcher,
enough for the assertions in test_docker.py."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    cmd: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array form (ENTRYPOINT ["a"], CMD ["b"]); shell form is split like a shell would."""
        text = self.args
        if self.cmd == "HEALTHCHECK":
            text = text.split(" CMD ", 1)[1].strip() if " CMD " in f" {text}" else ""
        text = text.strip()
        if text.startswith("["):
            return json.loads(text)
        return shlex.split(text)

    def options(self) -> dict[str, str]:
        """--flag=value options before the arguments (HEALTHCHECK, COPY, RUN --mount, ...)."""
        found = {}
        for token in self.args.split():
            if not token.startswith("--"):
                break
            key, _, value = token[2:].partition("=")
            found[key] = value
        return found


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]

    def last(self, cmd: str) -> Instruction | None:
        found = self.all(cmd)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def resolve(self, text: str, extra: dict[str, str] | None = None) -> str:
        """Substitute ${ARG} / $ARG with the global ARG defaults (plus `extra`)."""
        values = {**self.global_args, **(extra or {})}
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)

    def chain(self, name: str, build_args: dict[str, str] | None = None) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        result = []
        current: Stage | None = self.stage(name)
        names = {s.name for s in self.stages}
        while current is not None:
            result.append(current)
            base = self.resolve(current.base, build_args)
            current = self.stage(base) if base in names else None
        return result

    def effective(self, name: str, cmd: str, build_args: dict[str, str] | None = None) -> Instruction | None:
        """The instruction that is in force in an image built to stage `name` (inherited from bases)."""
        for stage in self.chain(name, build_args):
            found = stage.last(cmd)
            if found is not None:
                return found
        return None

    def env(self, name: str, build_args: dict[str, str] | None = None) -> dict[str, str]:
        env: dict[str, str] = {}
        for stage in reversed(self.chain(name, build_args)):
            for instruction in stage.all("ENV"):
                for token in shlex.split(instruction.args):
                    key, _, value = token.partition("=")
                    env[key] = value
        return env


def parse(path: Path) -> Dockerfile:
    instructions: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not buffer and not stripped):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            start = start or number
            continue
        buffer += stripped
        cmd, _, args = buffer.strip().partition(" ")
        instructions.append(Instruction(cmd.upper(), " ".join(args.split()) if cmd.upper() != "RUN" else args.strip(),
                                        start or number))
        buffer, start = "", 0
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.cmd == "FROM":
            parts = instruction.args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            if instruction.cmd == "ARG":
                key, _, value = instruction.args.partition("=")
                global_args[key] = value
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(path, global_args, stages)


# .dockerignore --------------------------------------------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "$")


def dockerignore_excludes(ignore_file: Path):
    """A predicate path -> excluded, with Docker's rules: patterns in order, the last match wins,
    `!` re-includes, and a pattern that matches a parent directory matches everything below it."""
    rules = []
    for line in ignore_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        rules.append((negate, _pattern_regex(pattern.strip("/"))))

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for negate, regex in rules:
            if any(regex.match(p) for p in prefixes):
                result = not negate
        return result

    return excluded
