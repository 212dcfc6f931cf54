"""`imagebind-vectorizer embed`: one JSON array of vectors on stdout, in input order.

The cheap checks come first, the expensive work last: the files are read (a missing one is reported
at once), then decoded and checked (a corrupt one is named before any model exists), then the
weights are found (a download is announced with its size), and only then is the model built."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from imagebind_vectorizer import notices, progress
from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.settings import Settings, add_arguments

if TYPE_CHECKING:
    import torch


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("embed", help="embed files (or texts) and print their vectors as JSON",
                                   description="Embed inputs of one kind; prints one JSON array of vectors.")
    parser.add_argument("--modality", required=True, choices=[k.value for k in InputKind],
                        help="input kind; INPUT is a file path, or the text itself for text")
    parser.add_argument("inputs", nargs="+", metavar="INPUT")
    progress.add_flag(parser)
    add_arguments(parser, ["model", "preprocessing", "limits"])
    parser.set_defaults(handler=run)


def read_inputs(kind: InputKind, inputs: list[str]) -> list[bytes | str]:
    if kind is InputKind.TEXT:
        return list(inputs)
    items: list[bytes | str] = []
    for index, name in enumerate(inputs):
        try:
            items.append(Path(name).read_bytes())
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror}", reason="io", kind=kind,
                             index=index) from exc
    return items


def preprocess_inputs(kind: InputKind, items: list[bytes | str], names: list[str], settings: Settings,
                      show: bool) -> list[torch.Tensor]:
    """Decode and check every input before a model exists; a bad one is named by its file."""
    from imagebind_vectorizer.preprocess.dispatch import preprocess

    options = settings.preprocess_options()
    tensors = []
    with progress.bar(len(items), f"reading {kind.value} inputs", unit="input", show=show and len(items) > 1) as bar:
        for index, item in enumerate(items):
            try:
                tensors.append(preprocess(kind, item, options))
            except InputError as exc:
                where = exc.at(kind, index)
                if kind is InputKind.TEXT:
                    raise where from exc
                # "image[1]" alone makes the user count arguments: name the file.
                raise InputError(f"{names[index]}: {exc.message}", reason=exc.reason, kind=kind,
                                 index=index) from exc
            bar.update(1)
    return tensors


def run(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.cli import setup_logging

    setup_logging("warning")
    kind = InputKind.parse(args.modality)
    settings = Settings.load(args)
    if kind.encoder not in settings.encoders:  # load only what is needed unless told otherwise
        raise InputError(f"{kind.value} needs the {kind.encoder} encoder, which --modalities excludes")
    settings = settings.replace(modalities=kind.encoder)  # one kind: load only its encoder
    show = progress.enabled(args)
    items = read_inputs(kind, args.inputs)
    inputs = preprocess_inputs(kind, items, args.inputs, settings, show)

    import torch

    from imagebind_vectorizer.runtime.embedder import DEFAULT_CHUNK, Embedder
    from imagebind_vectorizer.runtime.weights import CheckpointSource, resolve_checkpoint

    if settings.random_weights:
        print(notices.banner(notices.RANDOM_WEIGHTS), file=sys.stderr)
    else:  # found (or downloaded, announced) before the model is built
        path = resolve_checkpoint(CheckpointSource.of(settings), progress=show,
                                  announce=lambda text: print(text, file=sys.stderr))
        settings = settings.replace(checkpoint=str(path))
    with progress.waiting(f"loading the {kind.encoder} encoder", show=show):
        embedder = Embedder(settings, progress=show)
    rows = torch.cat(inputs)
    per_row = []
    with progress.bar(len(rows), f"embedding {len(inputs)} {kind.value} input(s)", unit="row",
                      show=show and len(rows) > DEFAULT_CHUNK) as bar:
        for start in range(0, len(rows), DEFAULT_CHUNK):
            chunk = rows[start:start + DEFAULT_CHUNK]
            per_row.append(embedder.forward_rows(kind, chunk, DEFAULT_CHUNK))
            bar.update(len(chunk))
    vectors = embedder.finish(torch.cat(per_row), [x.shape[0] for x in inputs])
    json.dump(vectors.tolist(), sys.stdout)
    sys.stdout.write("\n")
    return 0
