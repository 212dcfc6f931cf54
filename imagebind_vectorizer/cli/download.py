"""`imagebind-vectorizer download`: make the checkpoint `serve` will load ready ahead of it (resumable,
with a progress bar); prints its path, sha256 and size. The Helm chart's init container, compose's
model-download service and the Dockerfiles' BAKE_WEIGHTS step run exactly this command."""

from __future__ import annotations

import argparse
import sys

from imagebind_vectorizer import progress
from imagebind_vectorizer.settings import Settings, add_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download", help="download the official ImageBind checkpoint into the cache",
        description="Download the official imagebind_huge.pth (about 4.8 GB; CC-BY-NC 4.0) into the cache "
                    "(IMAGEBIND_CACHE, default ~/.cache/imagebind-vectorizer), resuming an interrupted download, "
                    "and record its sha256 next to it for the server. Prints the file's path and sha256. A cached "
                    "file is not downloaded again; with --sha256, a file that differs is refused (a download that "
                    "differs is removed). An explicit --checkpoint is never downloaded, only checked and recorded. "
                    "Runs sharing a cache folder take turns (a lock file there), so only one downloads.")
    add_arguments(parser, names=("checkpoint", "checkpoint_url", "checkpoint_sha256", "cache_dir"),
                  aliases={"checkpoint_url": ("--url",), "checkpoint_sha256": ("--sha256",)})
    progress.add_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.cli import setup_logging
    from imagebind_vectorizer.runtime.weights import CheckpointSource, prepare_checkpoint

    setup_logging("warning")
    path, record = prepare_checkpoint(CheckpointSource.of(Settings.load(args)), progress=progress.enabled(args),
                                      announce=lambda text: print(text, file=sys.stderr))
    print(f"path: {path}")
    print(f"sha256: {record.sha256}")
    print(f"size: {record.size} bytes")
    return 0
