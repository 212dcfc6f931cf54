"""The committed generated gRPC code matches proto/ (regenerated into a temp dir and compared)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "imagebind_vectorizer" / "server" / "proto_gen"


@pytest.fixture(scope="module")
def gen_proto() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_proto"] = module
    spec.loader.exec_module(module)
    return module


def test_committed_code_is_up_to_date(gen_proto: ModuleType) -> None:
    problems = gen_proto.stale_files(GENERATED)
    assert not problems, "\n".join(problems) + "\nrun `make proto`"


def test_generated_imports_are_package_relative(gen_proto: ModuleType) -> None:
    text = (GENERATED / "vectorizer_pb2_grpc.py").read_text()
    assert "from . import vectorizer_pb2" in text and "from imagebind.vectorizer" not in text


def test_check_detects_edits_but_not_generator_versions(gen_proto: ModuleType, tmp_path: Path) -> None:
    copy = tmp_path / "proto_gen"
    shutil.copytree(GENERATED, copy)
    grpc_file = copy / "vectorizer_pb2_grpc.py"
    text = grpc_file.read_text()
    # a newer grpcio-tools stamps its version; that alone is not staleness
    grpc_file.write_text(text.replace("GRPC_GENERATED_VERSION = '", "GRPC_GENERATED_VERSION = '9.", 1))
    assert gen_proto.stale_files(copy) == []
    grpc_file.write_text(text.replace("/imagebind.vectorizer.v1.Vectorizer/Vectorize'",
                                      "/imagebind.vectorizer.v1.Vectorizer/Renamed'", 1))
    assert len(gen_proto.stale_files(copy)) == 1
    grpc_file.write_text(text)
    (copy / "old_pb2.py").write_text("")
    assert gen_proto.stale_files(copy) == [f"{copy / 'old_pb2.py'}: not generated from proto/ (remove it)"]
