"""`imagebind-vectorizer` command line. Each subcommand lives in its own module and registers
itself through `register(subparsers)`; settings flags come from `settings.add_arguments`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from imagebind_vectorizer import __version__
from imagebind_vectorizer.errors import ImageBindError

SUBCOMMAND_MODULES = (
    "imagebind_vectorizer.cli.embed",
    "imagebind_vectorizer.cli.serve",
    "imagebind_vectorizer.cli.collection",
    "imagebind_vectorizer.cli.ingest",
    "imagebind_vectorizer.cli.search",
    "imagebind_vectorizer.cli.classify",
    "imagebind_vectorizer.cli.demo",
    "imagebind_vectorizer.cli.download",
    "imagebind_vectorizer.cli.api_key",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="imagebind-vectorizer",
        description="ImageBind embeddings for Weaviate: embed, serve, and manage collections.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ImageBindError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
