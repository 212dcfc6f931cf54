"""`imagebind-vectorizer download`: fetch the official checkpoint into the cache (resumable, with a
progress bar); prints its path and sha256."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imagebind_vectorizer.model.download import OFFICIAL_CHECKPOINT_URL


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download", help="download the official ImageBind checkpoint into the cache",
        description="Download the official imagebind_huge.pth (about 4.8 GB; CC-BY-NC 4.0) into the cache "
                    "(IMAGEBIND_CACHE, default ~/.cache/imagebind-vectorizer), resuming an interrupted download. "
                    "Prints the file's path and sha256. A cached file is not downloaded again.")
    parser.add_argument("--url", default=OFFICIAL_CHECKPOINT_URL, help=f"[default {OFFICIAL_CHECKPOINT_URL}]")
    parser.add_argument("--sha256", help="expected sha256; the file is removed if it differs")
    parser.add_argument("--cache-dir", type=Path, help="cache folder [env IMAGEBIND_CACHE]")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.cli import setup_logging
    from imagebind_vectorizer.model.checkpoint import CheckpointSource, resolve_checkpoint
    from imagebind_vectorizer.model.download import read_sidecar, sha256_file, write_sidecar

    setup_logging("warning")
    source = CheckpointSource(url=args.url, sha256=args.sha256, cache_dir=args.cache_dir)
    target = source.cached_path()
    if not target.is_file():
        print(f"downloading {args.url}\n  to {target}", file=sys.stderr)
    path = resolve_checkpoint(source, progress=not args.no_progress and sys.stderr.isatty())
    record = read_sidecar(path)
    if record is None:
        print(f"computing the sha256 of {path} ...", file=sys.stderr)
        record = sha256_file(path)
        write_sidecar(path, record)
    print(f"path: {path}")
    print(f"sha256: {record.sha256}")
    print(f"size: {record.size} bytes")
    return 0
