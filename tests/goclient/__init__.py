"""Go's net/http client (main.go), built with the local Go toolchain into the build cache, the way
the suite builds Weaviate: once per version of main.go."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from imagebind_vectorizer.weaviate.local import build_cache_root

SOURCE = Path(__file__).with_name("main.go")


def go_client() -> Path:
    """The built client; the test is skipped, saying why, when no Go toolchain is on PATH (Go is a
    prerequisite of `make test`: it builds Weaviate)."""
    source = SOURCE.read_bytes()
    dest = build_cache_root() / f"go-client-{hashlib.sha256(source).hexdigest()[:16]}" / "client"
    if dest.is_file():
        return dest
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go's net/http client is needed and no Go toolchain is on PATH (https://go.dev/dl; "
                    "`make test` needs Go anyway, to build Weaviate)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as work:
        (Path(work) / "main.go").write_bytes(source)
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-trimpath"}
        # `go mod init` writes the toolchain's own version: its net/http defaults, as in a current build
        for command in ([go, "mod", "init", "goclient"], [go, "build", "-o", "client", "."]):
            result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                break
        if result.returncode != 0:
            raise RuntimeError(f"building the Go client failed:\n{result.stdout}{result.stderr}")
        os.replace(Path(work) / "client", dest)  # atomic: concurrent test runs may build it too
    return dest
