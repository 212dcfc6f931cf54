"""`imagebind-vectorizer collection create|delete|show`: collections vectorized by multi2vec-bind."""

from __future__ import annotations

import argparse
import json
import logging

from imagebind_vectorizer.weaviate.client import add_connection_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("collection", help="create, delete or show a Weaviate collection",
                                   description="Manage Weaviate collections vectorized by multi2vec-bind.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create", help="create a collection with one blob property per media kind plus text and title",
        description="Create a collection: blob properties image, audio, video, depth, thermal, imu; text "
                    "properties text and title; bookkeeping properties source, sha256, modalities, format; "
                    "your metadata properties; one named vector 'default' over every field, or the "
                    "--named-vector sets. Cosine distance. IMU fields are written as 'imuFields', which "
                    "Weaviate reads (the Python client's imu_fields= writes 'IMUFields', which it ignores).")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--named-vector", action="append", default=[], metavar="NAME=FIELD,FIELD",
                        help="a named vector over these fields (repeatable), e.g. visual=image,video "
                             "words=text,title")
    create.add_argument("--weights", metavar="FIELD=W,...",
                        help="per-field weights, e.g. image=0.7,text=0.3 (fields without one get 1); Weaviate "
                             "applies them by position, so they only hold for objects that have every field of "
                             "the vector")
    create.add_argument("--property", action="append", default=[], metavar="NAME:TYPE",
                        help="a metadata property (repeatable); TYPE: text (default), int, number, boolean, date, "
                             "uuid, or an array such as text[]")
    create.add_argument("--moments", action="store_true",
                        help="a moment collection for `ingest --segments`: long audio and video as timed segments, "
                             "one object per window and part (visual, audio) in the vector 'moment' (multi2vec-bind, "
                             "vectors provided by the ingester); --property adds metadata, --named-vector and "
                             "--weights do not apply")
    create.add_argument("--description")
    create.add_argument("--replace", action="store_true", help="delete an existing collection of that name first")
    add_connection_arguments(create)
    create.set_defaults(handler=run_create)

    delete = actions.add_parser("delete", help="delete a collection and its objects")
    delete.add_argument("name", metavar="NAME")
    add_connection_arguments(delete)
    delete.set_defaults(handler=run_delete)

    show = actions.add_parser("show", help="print a collection's vectors, properties and object count")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true")
    add_connection_arguments(show)
    show.set_defaults(handler=run_show)


def quiet_client() -> None:
    """The CLI reports Weaviate's errors itself; the client's own logging would repeat them (and
    for a failed insert, print every failed object whole)."""
    # weaviate-client imports its logger module lazily, which then resets the level from
    # WEAVIATE_LOG_LEVEL: importing it first makes the level set below the one that stays.
    import weaviate.logger  # noqa: F401

    from imagebind_vectorizer.cli import setup_logging

    setup_logging("warning")
    logging.getLogger("weaviate-client").setLevel(logging.CRITICAL)


def run_create(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.settings import ConnectionSettings
    from imagebind_vectorizer.weaviate.client import connect_from_args
    from imagebind_vectorizer.weaviate.collections import create_collection, format_vectors, make_spec

    quiet_client()
    if args.moments:
        return _create_moments(args)
    spec = make_spec(args.name, named_vectors=args.named_vector, weights=args.weights, properties=args.property,
                     description=args.description)
    client = connect_from_args(args)
    try:
        collection = create_collection(client, spec, replace=args.replace)
    finally:
        client.close()
    print(f"created collection {collection.name} at {ConnectionSettings.load(args).weaviate_url}")
    for line in format_vectors(spec):
        print("  " + line)
    if any(v.weights for v in spec.vectors):
        print("  note: Weaviate applies weights by position over a vector's fields; an object missing some of "
              "them gets shifted weights (see README, 'Field weights')")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.weaviate.client import connect_from_args
    from imagebind_vectorizer.weaviate.collections import delete_collection

    quiet_client()
    client = connect_from_args(args)
    try:
        deleted = delete_collection(client, args.name)
    finally:
        client.close()
    print(f"deleted collection {args.name}" if deleted else f"no collection {args.name}; nothing deleted")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.weaviate.client import connect_from_args, weaviate_errors
    from imagebind_vectorizer.weaviate.collections import describe, get_collection

    quiet_client()
    client = connect_from_args(args)
    try:
        collection = get_collection(client, args.name)
        info = describe(collection)
        with weaviate_errors(f"counting objects of {args.name}"):
            count = collection.aggregate.over_all(total_count=True).total_count
    finally:
        client.close()
    if args.json:
        print(json.dumps({"name": info.name, "objects": count, "properties": info.property_types,
                          "vectors": info.vectors}, indent=2))
        return 0
    print(f"{info.name}: {count} objects")
    for name, config in info.vectors.items():
        print(f"  vector {name}: {json.dumps(config, sort_keys=True)}")
    print("  properties: " + ", ".join(f"{n}:{t}" for n, t in info.property_types.items()))
    return 0


def _create_moments(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.settings import ConnectionSettings
    from imagebind_vectorizer.weaviate.client import connect_from_args
    from imagebind_vectorizer.weaviate.collections import create_collection
    from imagebind_vectorizer.weaviate.errors import SchemaError
    from imagebind_vectorizer.weaviate.moments import MOMENT_VECTOR, make_moments_spec

    if args.named_vector or args.weights:
        raise SchemaError("--moments collections have one vector, 'moment'; --named-vector and --weights do not apply")
    spec = make_moments_spec(args.name, properties=args.property, description=args.description)
    client = connect_from_args(args)
    try:
        collection = create_collection(client, spec, replace=args.replace)
    finally:
        client.close()
    print(f"created moment collection {collection.name} at {ConnectionSettings.load(args).weaviate_url}")
    print(f"  vector {MOMENT_VECTOR}: video, audio (multi2vec-bind; vectors provided by `ingest --segments`)")
    return 0
