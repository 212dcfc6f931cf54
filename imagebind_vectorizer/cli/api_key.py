"""`imagebind-vectorizer api-key`: make a random API key for `serve --api-key-file`.

Without --file the key is printed. With --file it is written to a new file (mode 0600, never through
an existing name or symlink) and NOT printed, so a container's log never holds it; an existing file
with valid keys is kept, so a compose stack keeps its key across restarts."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "api-key", help="generate an API key (for serve --api-key-file and Weaviate's BIND_INFERENCE_API)",
        description="Print a new random API key (256 bits, URL-safe), or write it to --file. Weaviate sends it "
                    "when BIND_INFERENCE_API is http://weaviate:KEY@host:port.")
    parser.add_argument("--file", type=Path,
                        help="write the key to this new file (0600) instead of printing it; a file that already "
                             "holds valid keys is left as it is")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.server.auth import KeyRing, generate_key

    key = generate_key()
    if args.file is None:
        print(key)
        return 0
    path: Path = args.file
    if path.exists() or path.is_symlink():
        ring = KeyRing(file=path, name="API key")  # raises ConfigError when it holds no valid key
        print(f"{path} already holds {len(ring)} key(s); left as it is", file=sys.stderr)
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    print(f"wrote a new API key to {path}", file=sys.stderr)
    return 0
