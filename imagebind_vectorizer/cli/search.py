"""`imagebind-vectorizer search`: near* queries by any input kind, hybrid text queries, composed
(multi-input) queries, where filters, named vectors; a table or JSON."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imagebind_vectorizer import progress
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.client import add_connection_arguments


class _AddInput(argparse.Action):
    """Collects --text/--image/... in command-line order, so --weights line up with them."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        inputs = list(getattr(namespace, "inputs", None) or [])
        inputs.append((self.const, values))
        namespace.inputs = inputs


def add_input_arguments(parser: argparse.ArgumentParser, *, repeatable: bool = True) -> None:
    group = parser.add_argument_group("inputs" + (" (repeat or mix them for a composed query)" if repeatable else ""))
    for kind in InputKind:
        metavar = "TEXT" if kind is InputKind.TEXT else "FILE"
        what = "a text" if kind is InputKind.TEXT else f"a {kind.value} file"
        group.add_argument(f"--{kind.value}", dest="inputs", action=_AddInput, const=kind, metavar=metavar,
                           default=[], help=what)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search", help="search a collection by text, image, audio, video, depth, thermal or IMU",
        description="One input: Weaviate vectorizes it (nearText, nearImage, nearAudio, nearVideo, nearDepth, "
                    "nearThermal, nearIMU; hybrid with --hybrid-alpha). Several inputs: a composed query -- each "
                    "is embedded by our server (--server), normalised, weighted (--weights), summed, normalised "
                    "and searched with nearVector.")
    parser.add_argument("--collection", required=True, metavar="NAME")
    add_input_arguments(parser)
    parser.add_argument("--weights", metavar="W,W,...", help="weights of the inputs, in order (composed queries)")
    parser.add_argument("--where", action="append", default=[], metavar="PROP=VALUE",
                        help="filter (repeatable, all must hold); also !=, >, >=, <, <=, and ~ for a * pattern")
    parser.add_argument("--hybrid-alpha", type=float, metavar="A",
                        help="hybrid keyword+vector search for a --text query: 0 keywords only, 1 vector only")
    parser.add_argument("--limit", type=int, default=10, metavar="K")
    parser.add_argument("--target-vector", metavar="V",
                        help="the named vector to search (needed when there are several)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    moments = parser.add_argument_group("moments (a collection made with `collection create --moments`)")
    moments.add_argument("--moments", action="store_true",
                         help="search timed segments: hits grouped by source file, each with start-end times, best "
                              "moments first; --limit is the number of files")
    moments.add_argument("--per-file", type=int, default=3, metavar="K", help="moments shown per file [default 3]")
    moments.add_argument("--part", choices=("visual", "audio"),
                         help="only what is seen (visual) or only what is heard (audio); default: both, a window "
                              "scored by its best part")
    progress.add_flag(parser)
    add_connection_arguments(parser, server=True)
    parser.set_defaults(handler=run)


def parse_weights(text: str | None, count: int) -> list[float] | None:
    from imagebind_vectorizer.weaviate.errors import QueryError

    if text is None:
        return None
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise QueryError(f"--weights {text!r}: expected numbers separated by commas") from None
    if len(weights) != count:
        raise QueryError(f"--weights has {len(weights)} numbers for {count} inputs")
    return weights


def run(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.cli.collection import quiet_client
    from imagebind_vectorizer.settings import ConnectionSettings
    from imagebind_vectorizer.weaviate.client import connect_from_args
    from imagebind_vectorizer.weaviate.collections import get_collection
    from imagebind_vectorizer.weaviate.search import (
        QueryInput,
        check_same_model,
        format_json,
        format_table,
        random_weights_notice,
        search,
    )
    from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient

    quiet_client()
    inputs = [QueryInput.of(kind, value) for kind, value in args.inputs]
    if not inputs:
        print("error: give an input: --text, --image, --audio, --video, --depth, --thermal or --imu", file=sys.stderr)
        return 2
    if args.moments:
        return run_moments(args, inputs)
    weights = parse_weights(args.weights, len(inputs))
    connection = ConnectionSettings.load(args)
    server = VectorizerClient.from_connection(connection) if len(inputs) > 1 else None
    client = connect_from_args(args)
    try:
        if server is not None:
            warning = check_same_model(client, server)
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
        notice = random_weights_notice(client, server)
        if notice:
            print(notice, file=sys.stderr)
        collection = get_collection(client, args.collection)
        # Weaviate (or our server, for a composed query) vectorizes the input while we wait: a
        # video on a CPU can take minutes, so show that time passes.
        with progress.waiting(f"searching {collection.name}", show=progress.enabled(args)):
            result = search(collection, inputs, weights=weights, where=args.where, hybrid_alpha=args.hybrid_alpha,
                            limit=args.limit, target_vector=args.target_vector, server=server)
    finally:
        client.close()
    print(format_json(result) if args.json else format_table(result))
    return 0


def run_moments(args: argparse.Namespace, inputs: list[Any]) -> int:
    from imagebind_vectorizer.cli.collection import quiet_client
    from imagebind_vectorizer.weaviate.client import connect_from_args
    from imagebind_vectorizer.weaviate.collections import get_collection
    from imagebind_vectorizer.weaviate.errors import QueryError
    from imagebind_vectorizer.weaviate.moments import format_moments, format_moments_json, search_moments

    quiet_client()
    if len(inputs) != 1 or args.weights or args.target_vector:
        raise QueryError("--moments takes one input (--text, --image, --audio, --video, ...); composed queries, "
                         "--weights and --target-vector do not apply")
    client = connect_from_args(args)
    try:
        collection = get_collection(client, args.collection)
        result = search_moments(collection, inputs[0], where=args.where, hybrid_alpha=args.hybrid_alpha,
                                files=args.limit, per_file=args.per_file, part=args.part)
    finally:
        client.close()
    print(format_moments_json(result) if args.json else format_moments(result))
    return 0
