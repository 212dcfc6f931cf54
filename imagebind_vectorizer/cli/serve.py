"""`imagebind-vectorizer serve`: the HTTP (Weaviate contract) and gRPC transports over one engine."""

from __future__ import annotations

import argparse

from imagebind_vectorizer import notices
from imagebind_vectorizer.settings import Settings, add_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the inference server (HTTP for Weaviate, gRPC)",
                                   description="Serve ImageBind over Weaviate's multi2vec-bind HTTP contract "
                                               "and gRPC, with dynamic batching.")
    add_arguments(parser, ["model", "preprocessing", "limits", "server", "engine", "segments", "security"])
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from imagebind_vectorizer import logs
    from imagebind_vectorizer.server.app import serve

    settings = Settings.load(args)
    if settings.random_weights:  # in the server's own log format, before the model loads (/meta says it too)
        logs.configure(settings.log_level, settings.log_format)
        logging.getLogger("imagebind_vectorizer.serve").warning(notices.banner(notices.RANDOM_WEIGHTS))
    return serve(settings)
