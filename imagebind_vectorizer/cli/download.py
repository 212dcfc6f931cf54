"""`imagebind-vectorizer download`: fetch the official checkpoint into the cache (resumable, with a
progress bar); prints its path and sha256."""

from __future__ import annotations

import argparse
import sys

from imagebind_vectorizer import progress
from imagebind_vectorizer.settings import Settings, add_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download", help="download the official ImageBind checkpoint into the cache",
        description="Download the official imagebind_huge.pth (about 4.8 GB; CC-BY-NC 4.0) into the cache "
                    "(IMAGEBIND_CACHE, default ~/.cache/imagebind-vectorizer), resuming an interrupted download. "
                    "Prints the file's path and sha256. A cached file is not downloaded again; with --sha256, "
                    "a download that differs is removed.")
    add_arguments(parser, names=("checkpoint_url", "checkpoint_sha256", "cache_dir"),
                  aliases={"checkpoint_url": ("--url",), "checkpoint_sha256": ("--sha256",)})
    progress.add_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.cli import setup_logging
    from imagebind_vectorizer.runtime.download import read_sidecar, sha256_file, write_sidecar
    from imagebind_vectorizer.runtime.weights import CheckpointSource, resolve_checkpoint

    setup_logging("warning")
    settings = Settings.load(args, checkpoint=None)  # this command fills the cache; a local file is beside the point
    source = CheckpointSource.of(settings)
    path = resolve_checkpoint(source, progress=progress.enabled(args),
                              announce=lambda text: print(text, file=sys.stderr))
    record = read_sidecar(path)
    if record is None:
        print(f"computing the sha256 of {path} ...", file=sys.stderr)
        record = sha256_file(path)
        write_sidecar(path, record)
    print(f"path: {path}")
    print(f"sha256: {record.sha256}")
    print(f"size: {record.size} bytes")
    return 0
