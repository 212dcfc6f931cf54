"""`imagebind-vectorizer ingest DIR --collection NAME`: every file in a folder, kinds detected from
content; resumable; exit code 0 only when every object is in the collection."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imagebind_vectorizer import progress
from imagebind_vectorizer.weaviate.client import add_connection_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest", help="insert a folder of images, audio, video, depth, thermal, IMU and text files",
        description="Insert every file under DIR as an object (kinds detected from the bytes; depth and thermal "
                    "images need a hint: a sidecar JSON {\"modality\": \"depth\"}, a manifest 'modality' column, "
                    "or a depth/ or thermal/ folder). Metadata comes from sidecar JSON files (x.jpg.json or "
                    "x.json) and --manifest. Object UUIDs derive from the content's sha256, so running again "
                    "skips what is already stored and resumes an interrupted run. Exit code: 0 when every object "
                    "is stored, 1 when any failed (each is listed with Weaviate's reason), 2 on setup errors.")
    parser.add_argument("folder", metavar="DIR", type=Path)
    parser.add_argument("--collection", required=True, metavar="NAME")
    parser.add_argument("--manifest", type=Path, metavar="CSV",
                        help="CSV with a 'file' column (paths relative to DIR) and metadata columns; optional "
                             "'modality' and 'group' columns")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N",
                        help="objects per insert call [default 32]")
    parser.add_argument("--overwrite", action="store_true",
                        help="insert objects again even if they exist (updates their metadata)")
    progress.add_flag(parser)
    parser.add_argument("--follow-symlinks", action="store_true",
                        help="read symbolic links that point outside DIR, and enter linked folders (by default "
                             "they are reported and skipped, so nothing outside DIR reaches Weaviate)")
    moments = parser.add_argument_group("moments (long audio and video as timed segments)")
    moments.add_argument("--segments", metavar="SECONDS[,OVERLAP]",
                         help="segment every audio and video file into windows (e.g. 10s or 20s,3s) and store each "
                              "window as moments in NAME, a collection made with `collection create NAME --moments`; "
                              "our server computes the vectors (--server-grpc)")
    moments.add_argument("--segment-over", type=float, metavar="SECONDS",
                         help="with --segments: only files longer than this are segmented (others are listed as "
                              "skipped, for a whole-file collection)")
    add_connection_arguments(parser, segments=True)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from imagebind_vectorizer.cli.collection import quiet_client
    from imagebind_vectorizer.weaviate.client import connect_from_args
    from imagebind_vectorizer.weaviate.collections import get_collection
    from imagebind_vectorizer.weaviate.ingest import format_report, ingest_folder

    quiet_client()
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    if args.segments is not None:
        return run_moments(args)
    client = connect_from_args(args)
    try:
        collection = get_collection(client, args.collection)
        # Each failure once, as it happens (one bounded line, above the progress bar); the summary
        # then only counts them.
        report = ingest_folder(collection, args.folder, manifest=args.manifest, batch_size=args.batch_size,
                               overwrite=args.overwrite, progress=progress.enabled(args),
                               on_problem=lambda p: tqdm.write(f"failed: {p}", file=sys.stderr),
                               follow_symlinks=args.follow_symlinks)
    finally:
        client.close()
    print(format_report(report, collection.name, list_failures=False))
    return 0 if report.ok else 1


def run_moments(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from imagebind_vectorizer.client.segments import SegmentClient
    from imagebind_vectorizer.moments import WindowSpec
    from imagebind_vectorizer.settings import ConnectionSettings
    from imagebind_vectorizer.weaviate.client import connect_from_args
    from imagebind_vectorizer.weaviate.collections import get_collection
    from imagebind_vectorizer.weaviate.ingest.moments import format_moments_report, ingest_moments

    try:
        spec = WindowSpec.parse(args.segments)
    except ValueError as exc:
        print(f"error: --segments: {exc}", file=sys.stderr)
        return 2
    connection = ConnectionSettings.load(args)
    server = SegmentClient(connection.server_grpc_address(), timeout_s=None, api_key=connection.server_api_key,
                           ca_file=connection.server_ca_file, tls=connection.server.startswith("https://"))
    client = connect_from_args(args)
    try:
        collection = get_collection(client, args.collection)
        report = ingest_moments(collection, args.folder, server, spec=spec, profile=server.preprocessing(),
                                manifest=args.manifest, batch_size=args.batch_size, segment_over=args.segment_over,
                                progress=progress.enabled(args),
                                on_problem=lambda p: tqdm.write(f"problem: {p}", file=sys.stderr),
                                follow_symlinks=args.follow_symlinks)
    finally:
        client.close()
        server.close()
    print(format_moments_report(report, collection.name))
    return 0 if report.ok else 1
