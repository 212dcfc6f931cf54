"""Generate the Python gRPC code for proto/ with grpcio-tools, with package-relative imports.

    python scripts/gen_proto.py --out imagebind_vectorizer/server/proto_gen     # write
    python scripts/gen_proto.py --out imagebind_vectorizer/server/proto_gen --check  # exit 1 if stale

protoc writes `imagebind/vectorizer/v1/vectorizer_pb2*.py` importing each other by their proto
package path; the files are flattened into --out and those imports made relative, so the code lives
inside our package. `--check` compares a fresh generation with what is in --out, ignoring only the
generator's own version numbers (a newer grpcio-tools stamps newer ones into otherwise equal code).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTOS = ("imagebind/vectorizer/v1/vectorizer.proto",)
INIT = '"""Generated from proto/ by scripts/gen_proto.py (`make proto`). Do not edit."""\n'

_VERSION_STAMPS = (
    (re.compile(r"^# Protobuf Python Version: .*$", re.M), "# Protobuf Python Version: X"),
    (re.compile(r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*\d+,\s*\d+,\s*\d+,"),
     "ValidateProtobufRuntimeVersion(_runtime_version.Domain.PUBLIC, X, Y, Z,"),
    (re.compile(r"^GRPC_GENERATED_VERSION = '[^']*'$", re.M), "GRPC_GENERATED_VERSION = 'X'"),
)


def _module(proto: str) -> str:
    """imagebind/vectorizer/v1/vectorizer.proto -> imagebind.vectorizer.v1.vectorizer"""
    return proto.removesuffix(".proto").replace("/", ".")


def _relative_imports(text: str) -> str:
    for proto in PROTOS:
        package, _, name = _module(proto).rpartition(".")
        text = re.sub(rf"^from {re.escape(package)} import {name}_pb2", f"from . import {name}_pb2", text,
                      flags=re.M)
        text = re.sub(rf"^import {re.escape(package)}\.{name}_pb2", f"from . import {name}_pb2", text, flags=re.M)
    return text


def generate() -> dict[str, str]:
    """File name -> content of the generated code, as it is committed."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", *PROTOS]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        files = {"__init__.py": INIT}
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".pyi"):
                files[path.name] = _relative_imports(path.read_text())
    return files


def normalize(text: str) -> str:
    for pattern, replacement in _VERSION_STAMPS:
        text = pattern.sub(replacement, text)
    return text


def stale_files(out: Path) -> list[str]:
    """Differences between a fresh generation and `out`, as unified diffs (empty: up to date)."""
    problems = []
    fresh = generate()
    for name, content in fresh.items():
        path = out / name
        current = path.read_text() if path.exists() else ""
        if normalize(current) != normalize(content):
            problems.append("".join(difflib.unified_diff(
                normalize(current).splitlines(keepends=True), normalize(content).splitlines(keepends=True),
                fromfile=f"{path} (committed)", tofile=f"{name} (generated)", n=1)))
    extra = sorted(p.name for p in out.glob("*.py*") if p.name not in fresh) if out.exists() else []
    problems += [f"{out / name}: not generated from proto/ (remove it)" for name in extra]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="package directory for the generated code")
    parser.add_argument("--check", action="store_true", help="only report whether --out is stale")
    args = parser.parse_args()
    if args.check:
        problems = stale_files(args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("generated gRPC code is stale: run `make proto`", file=sys.stderr)
        return 1 if problems else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in generate().items():
        (args.out / name).write_text(content)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
