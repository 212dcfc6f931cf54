"""`imagebind-vectorizer serve`: the HTTP (Weaviate contract) and gRPC transports over one engine."""

from __future__ import annotations

import argparse

from imagebind_vectorizer.settings import Settings, add_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the inference server (HTTP for Weaviate, gRPC)",
                                   description="Serve ImageBind over Weaviate's multi2vec-bind HTTP contract "
                                               "and gRPC, with dynamic batching.")
    add_arguments(parser, ["model", "preprocessing", "limits", "server", "engine", "segments", "security"])
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.server.app import serve

    return serve(Settings.load(args))
