"""What every command says about the weights, worded once: random weights (loudly, by each command
that loads a model or searches through one), a download about to start (with its size), and how to
provide weights when there are none. A leaf: the runtime, the CLI and the Weaviate side all use it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CHECKPOINT_SIZE = "about 4.8 GB"
CHECKPOINT_LICENCE = "CC-BY-NC 4.0: non-commercial use only"

RANDOM_WEIGHTS = ("RANDOM WEIGHTS: the model is untrained, so every vector, ranking and probability it produces is "
                  "meaningless (use it to try the plumbing, nothing else)")


def banner(text: str) -> str:
    return f"*** {text} ***"


def download_notice(url: str, dest: Path, *, official: bool = True) -> str:
    what = f" ({CHECKPOINT_SIZE}, {CHECKPOINT_LICENCE})" if official else ""
    return (f"The ImageBind weights are not in the cache: downloading {url}{what} to {dest}. An interrupted "
            "download resumes where it stopped.")


def how_to_provide_weights(cached: Path) -> str:
    """The ways to give a command real weights (or to try it without)."""
    return ("To provide them:\n"
            f"  * download them:          imagebind-vectorizer download   ({CHECKPOINT_SIZE}, {CHECKPOINT_LICENCE})\n"
            "  * point to a file:        --checkpoint /path/to/imagebind_huge.pth   (or IMAGEBIND_CHECKPOINT)\n"
            f"  * or put the file here:   {cached}   (IMAGEBIND_CACHE sets the folder)\n"
            "  * or try the plumbing:    --random-weights   (rankings are then meaningless)")


def reports_random_weights(meta: Mapping[str, Any] | None) -> bool:
    """Does a server's /meta (ours, or Weaviate's copy of it for multi2vec-bind) say its weights are random?"""
    checkpoint = (meta or {}).get("checkpoint")
    return isinstance(checkpoint, Mapping) and checkpoint.get("weights") == "random"
