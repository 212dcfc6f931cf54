"""`imagebind-vectorizer classify --labels a,b,c --audio F`: zero-shot classification through our server."""

from __future__ import annotations

import argparse
import json
import sys

from imagebind_vectorizer import notices, progress
from imagebind_vectorizer.cli.search import add_input_arguments
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.client import add_server_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = "; ".join(f"{kind.value}: {kind.facts.zero_shot_template!r}" for kind in InputKind)
    parser = subparsers.add_parser(
        "classify", help="zero-shot classification of any input against text labels",
        description="Embed the labels as texts (through a prompt template) and the input in its own modality with "
                    "our server, then rank the labels by softmax(text logit scale x cosine), as the ImageBind "
                    f"paper does. Default templates: {defaults}.")
    parser.add_argument("--labels", required=True, metavar="A,B,C", help="comma-separated labels")
    add_input_arguments(parser, repeatable=False)
    parser.add_argument("--template", metavar="T", help="prompt template containing {label}")
    parser.add_argument("--json", action="store_true")
    progress.add_flag(parser)
    add_server_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.settings import ConnectionSettings
    from imagebind_vectorizer.weaviate.classify import classify, format_scores
    from imagebind_vectorizer.weaviate.search import QueryInput
    from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient

    if len(args.inputs) != 1:
        print("error: give exactly one input to classify (--image F, --audio F, --text T, ...)", file=sys.stderr)
        return 2
    kind, value = args.inputs[0]
    item = QueryInput.of(kind, value)
    connection = ConnectionSettings.load(args)
    server = VectorizerClient.from_connection(connection)
    if notices.reports_random_weights(server.meta()):
        print(notices.banner(notices.RANDOM_WEIGHTS), file=sys.stderr)
    with progress.waiting(f"classifying on {server.url}", show=progress.enabled(args)):
        scores = classify(server, item, args.labels.split(","), template=args.template)
    if args.json:
        print(json.dumps([{"label": s.label, "probability": s.probability, "cosine": s.similarity,
                           "prompt": s.prompt} for s in scores], indent=2))
    else:
        print(f"{kind.value} {item.label}:")
        print(format_scores(scores))
    return 0
