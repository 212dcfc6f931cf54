"""`make weaviate`: build weaviate-server once into the cache (imagebind_vectorizer.weaviate.local's
build, the one the demo and the tests use when no binary is there: same lock, same progress).

Usage: python scripts/build_weaviate.py DEST VERSION"""

import sys
from pathlib import Path

from imagebind_vectorizer.weaviate.errors import LocalServerError
from imagebind_vectorizer.weaviate.local import build_weaviate

if __name__ == "__main__":
    dest, version = Path(sys.argv[1]), sys.argv[2]
    if dest.is_file():
        sys.exit(0)
    try:
        build_weaviate(dest, version=version)
    except LocalServerError as exc:
        sys.exit(f"error: {exc}")
