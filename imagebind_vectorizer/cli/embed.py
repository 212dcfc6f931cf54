"""`imagebind-vectorizer embed`: one JSON array of vectors on stdout, in input order."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.settings import Settings, add_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("embed", help="embed files (or texts) and print their vectors as JSON",
                                   description="Embed inputs of one kind; prints one JSON array of vectors.")
    parser.add_argument("--modality", required=True, choices=[k.value for k in InputKind],
                        help="input kind; INPUT is a file path, or the text itself for text")
    parser.add_argument("inputs", nargs="+", metavar="INPUT")
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


def run(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.cli import setup_logging
    from imagebind_vectorizer.runtime.embedder import Embedder

    setup_logging("warning")
    kind = InputKind.parse(args.modality)
    settings = Settings.load(args)
    if kind.encoder not in settings.encoders:  # load only what is needed unless told otherwise
        raise InputError(f"{kind.value} needs the {kind.encoder} encoder, which --modalities excludes")
    settings = settings.replace(modalities=kind.encoder)  # one kind: load only its encoder
    items = read_inputs(kind, args.inputs)
    try:
        vectors = Embedder(settings, progress=sys.stderr.isatty()).embed(kind, items)
    except InputError as exc:
        if kind is InputKind.TEXT or exc.index is None:
            raise
        # "image[1]" alone makes the user count arguments: name the file.
        raise InputError(f"{args.inputs[exc.index]}: {exc.message}", reason=exc.reason, kind=exc.kind,
                         index=exc.index) from exc
    json.dump(vectors.tolist(), sys.stdout)
    sys.stdout.write("\n")
    return 0
