"""`imagebind-vectorizer demo`: the whole pipeline on the bundled sample media.

Starts our server (official weights from the cache, downloaded if needed; or --checkpoint; or
--random-weights) and a local Weaviate that vectorizes through it (or uses --weaviate-url), creates
a collection, ingests imagebind_vectorizer/sample_media/, runs one query per input kind, a filtered
hybrid query, a composed image+audio query and a zero-shot classification, prints the results and
shuts everything down."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from imagebind_vectorizer import notices, progress
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.settings import ConnectionSettings, Settings, add_arguments

SAMPLE_MEDIA = Path(__file__).resolve().parents[1] / "sample_media"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run our server + a local Weaviate on the sample media and query every modality",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The weights: by default the official checkpoint from the cache, downloaded if missing.
    add_arguments(parser, names=("checkpoint", "model_config", "random_weights", "device"))
    parser.add_argument("--no-download", action="store_true",
                        help="never download; fail with instructions if no weights are available")
    add_arguments(parser, settings=ConnectionSettings, names=("weaviate_url", "weaviate_grpc_port"), helps={
        "weaviate_url": "use this Weaviate instead of starting one; it must vectorize with a multi2vec-bind server "
                        "that loads the same weights (only this flag: WEAVIATE_URL does not stop the demo from "
                        "starting its own)"})
    parser.add_argument("--collection", default="ImageBindDemo", help="collection to (re)create [ImageBindDemo]")
    parser.add_argument("--media", type=Path, default=SAMPLE_MEDIA, help="folder to ingest [the bundled samples]")
    parser.add_argument("--limit", type=int, default=3, help="results per query [3]")
    parser.add_argument("--keep", action="store_true",
                        help="keep the collection (with --weaviate-url; a local Weaviate is always removed)")
    progress.add_flag(parser)
    parser.set_defaults(handler=run)


def say(text: str = "") -> None:
    print(text, flush=True)


def resolve_weights(args: argparse.Namespace) -> tuple[list[str], str] | None:
    """(serve flags, description), or None after telling the user why there are no weights."""
    from imagebind_vectorizer.errors import CheckpointError
    from imagebind_vectorizer.runtime.weights import CheckpointSource, resolve_checkpoint

    settings = Settings.load(args)  # the server started below reads the same environment
    flags = ["--model-config", args.model_config] if args.model_config else []
    if args.device:
        flags += ["--device", args.device]
    if settings.random_weights:
        return [*flags, "--random-weights"], "random weights"
    if settings.checkpoint:
        checkpoint = Path(settings.checkpoint).expanduser()
        if not checkpoint.is_file():
            say(f"error: checkpoint {checkpoint} does not exist")
            return None
        return [*flags, "--checkpoint", str(checkpoint)], f"checkpoint {checkpoint}"
    source = CheckpointSource.of(settings)
    cached = source.cached_path()
    if cached.is_file():
        return [*flags, "--checkpoint", str(cached)], f"official weights {cached}"
    if args.no_download:
        say(f"No ImageBind weights are available: {cached} does not exist and --no-download was given.\n"
            f"The demo needs real weights to give meaningful results. {notices.how_to_provide_weights(cached)}")
        return None
    try:
        path = resolve_checkpoint(source, progress=progress.enabled(args), announce=say)
    except CheckpointError as exc:
        say(f"\n{exc}")  # what failed, and how else to provide the weights
        return None
    return [*flags, "--checkpoint", str(path)], f"official weights {path}"


@contextlib.contextmanager
def step(text: str, show: bool) -> Iterator[None]:
    """One stage: on a terminal a spinner with the elapsed time while it runs, then one line with
    its duration; elsewhere the line is printed first, so a log shows what is running."""
    if not show:
        print(f"-- {text} ...", end="", flush=True)
    started = time.monotonic()
    try:
        with progress.waiting(f"-- {text} ...", show=show):
            yield
    except BaseException:
        print(f"-- {text} ... failed" if show else " failed", flush=True)
        raise
    print(f"{f'-- {text} ...' if show else ''} done ({time.monotonic() - started:.1f} s)", flush=True)


def run(args: argparse.Namespace) -> int:
    from imagebind_vectorizer.cli.collection import quiet_client

    quiet_client()
    if args.checkpoint and args.random_weights:
        say("error: give either --checkpoint or --random-weights")
        return 2
    if not args.media.is_dir():
        say(f"error: no media folder at {args.media}")
        return 2
    resolved = resolve_weights(args)
    if resolved is None:
        return 2
    serve_flags, description = resolved
    with tempfile.TemporaryDirectory(prefix="ibv-demo-") as tmp:
        return _run(args, serve_flags, description, Path(tmp))


def _run(args: argparse.Namespace, serve_flags: list[str], description: str, tmp: Path) -> int:
    from imagebind_vectorizer.weaviate.client import connect
    from imagebind_vectorizer.weaviate.collections import create_collection, delete_collection, make_spec
    from imagebind_vectorizer.weaviate.ingest import format_report, ingest_folder
    from imagebind_vectorizer.weaviate.local import LocalServerError, LocalVectorizer, LocalWeaviate
    from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient

    random = "--random-weights" in serve_flags
    show = progress.enabled(args)
    if random:
        say(notices.banner(notices.RANDOM_WEIGHTS))
    say(f"ImageBind demo · weights: {description}")
    server = LocalVectorizer([*serve_flags, "--log-format", "text", "--log-level", "warning"],
                             log_path=tmp / "vectorizer.log", grpc_port=0)
    weaviate_proc: LocalWeaviate | None = None
    client = None
    try:
        with step(f"starting the vectorizer on {server.url} (loading the model)", show):
            server.start()
        if args.weaviate_url:
            weaviate_url, grpc_port = args.weaviate_url, ConnectionSettings.load(args).weaviate_grpc_port
            say(f"-- using Weaviate at {weaviate_url}; it vectorizes with its own BIND_INFERENCE_API server, "
                "which must load the same weights as the one started here")
        else:
            weaviate_proc = LocalWeaviate(server.url, data_dir=tmp / "weaviate-data", log_path=tmp / "weaviate.log")
            with step(f"starting Weaviate on {weaviate_proc.url} (BIND_INFERENCE_API={server.url})", show):
                weaviate_proc.start()
            weaviate_url, grpc_port = weaviate_proc.url, weaviate_proc.grpc_port
        client = connect(weaviate_url, grpc_port=grpc_port)
        spec = make_spec(args.collection, properties=["category:text"],
                         description="imagebind-vectorizer demo: sample media of every kind")
        with step(f"creating collection {args.collection}", show):
            collection = create_collection(client, spec, replace=True)
        say(f"-- ingesting {args.media} (Weaviate sends each object to the vectorizer)")
        manifest = args.media / "manifest.csv"
        report = ingest_folder(collection, args.media, manifest=manifest if manifest.is_file() else None,
                               batch_size=8, progress=show)
        say(format_report(report, collection.name))
        if not report.ok:
            return 1
        queries_ok = _queries(collection, VectorizerClient(server.url), args.media, args.limit, random, show)
        moments_ok = _moments(client, server, args.collection + "Moments", tmp, random, show)
        if args.weaviate_url and not args.keep:
            delete_collection(client, args.collection)
            delete_collection(client, args.collection + "Moments")
        return 0 if queries_ok and moments_ok else 1
    except LocalServerError as exc:
        say(f"\nerror: {exc}")
        return 1
    finally:
        if client is not None:
            client.close()
        with step("shutting down", show):
            if weaviate_proc is not None:
                weaviate_proc.stop()
            server.stop()


#: which 10-second stretch of the demo's long recording each sample sound fills (start, seconds)
RECORDING_SOUNDS = (("beep_440hz.wav", 40.0), ("waves.flac", 70.0), ("chirp.mp3", 100.0))
RECORDING_SECONDS = 120.0


def long_recording(path: Path) -> None:
    """A 2-minute synthetic field recording: quiet noise, and three 10-second stretches each filled
    with one bundled sound, repeated (ImageBind's audio recipe hears three 2-second clips spread
    over a window, so a sound shorter than the window could fall between them)."""
    import wave

    import numpy as np
    import torchaudio

    from imagebind_vectorizer.preprocess.audio import decode_audio
    from imagebind_vectorizer.preprocess.profiles import Limits

    rate = 16_000
    track = np.random.default_rng(0).normal(0.0, 0.01, int(RECORDING_SECONDS * rate)).astype(np.float32)
    for name, at in RECORDING_SOUNDS:
        waveform, source_rate = decode_audio((SAMPLE_MEDIA / name).read_bytes(), Limits().max_audio_seconds)
        sound = torchaudio.functional.resample(waveform[:1], source_rate, rate)[0].numpy()
        start, length = int(at * rate), 10 * rate
        track[start:start + length] += np.resize(sound, length)  # np.resize repeats the sound
    pcm = (np.clip(track, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def _moments(client: object, server: object, name: str, tmp: Path, random: bool, show: bool) -> bool:
    """Moment search: a long recording ingested as 10-second segments, then found to the window."""
    from imagebind_vectorizer.client.segments import SegmentClient
    from imagebind_vectorizer.errors import ImageBindError
    from imagebind_vectorizer.moments import WindowSpec
    from imagebind_vectorizer.weaviate.collections import create_collection
    from imagebind_vectorizer.weaviate.ingest.moments import format_moments_report, ingest_moments
    from imagebind_vectorizer.weaviate.moments import format_moments, make_moments_spec, search_moments
    from imagebind_vectorizer.weaviate.search import QueryInput

    note = "   [random weights: rankings are meaningless]" if random else ""
    folder = tmp / "recordings"
    folder.mkdir()
    long_recording(folder / "field_recording.wav")
    placed = ", ".join(f"{sound} at {at:g}-{at + 10:g} s" for sound, at in RECORDING_SOUNDS)
    say(f"\n== moments: a {RECORDING_SECONDS:g}-second recording with {placed}, in 10-second segments{note}")
    try:
        with step(f"creating moment collection {name}", show):
            collection = create_collection(client, make_moments_spec(name), replace=True)  # type: ignore[arg-type]
        say("-- ingesting it as segments (VectorizeSegments)")
        with SegmentClient(server.grpc_address) as segments:  # type: ignore[attr-defined]
            report = ingest_moments(collection, folder, segments, spec=WindowSpec(10.0),
                                    profile=segments.preprocessing(), progress=show)
        say(format_moments_report(report, name))
        for query in (QueryInput.of(InputKind.AUDIO, SAMPLE_MEDIA / "beep_440hz.wav"),
                      QueryInput.of(InputKind.TEXT, "waves breaking on a beach")):
            say(f"\n== when in the recording: {query.kind.value} {query.label}{note}")
            with progress.waiting("searching the moments", show=show):
                found = search_moments(collection, query, files=1, per_file=3)
            say(format_moments(found))
        return report.ok
    except ImageBindError as exc:
        say(f"   error: {exc}")
        return False


def _queries(collection: object, server: object, media: Path, limit: int, random: bool, show: bool) -> bool:
    from imagebind_vectorizer.errors import ImageBindError
    from imagebind_vectorizer.weaviate.classify import classify, format_scores
    from imagebind_vectorizer.weaviate.search import QueryInput, format_table, search

    note = "   [random weights: rankings are meaningless]" if random else ""
    plans: list[tuple[str, list[QueryInput], dict[str, object]]] = [
        ("text", [QueryInput.of(InputKind.TEXT, "a sunset over the sea")], {}),
        ("image", [QueryInput.of(InputKind.IMAGE, media / "red_square.png")], {}),
        ("audio", [QueryInput.of(InputKind.AUDIO, media / "beep_440hz.wav")], {}),
        ("video", [QueryInput.of(InputKind.VIDEO, media / "bouncing_ball.mp4")], {}),
        ("depth", [QueryInput.of(InputKind.DEPTH, media / "room_depth.png")], {}),
        ("thermal", [QueryInput.of(InputKind.THERMAL, media / "warm_hand_thermal.jpg")], {}),
        ("IMU", [QueryInput.of(InputKind.IMU, media / "walking.csv")], {}),
        ("filtered hybrid (category=sound, alpha 0.5)", [QueryInput.of(InputKind.TEXT, "a beep")],
         {"hybrid_alpha": 0.5, "where": ["category=sound"]}),
        ("composed: sunset image + waves audio", [QueryInput.of(InputKind.IMAGE, media / "sunset.jpg"),
                                                  QueryInput.of(InputKind.AUDIO, media / "waves.flac")],
         {"weights": [0.5, 0.5], "server": server}),
    ]
    ok = True
    for title, inputs, options in plans:
        say(f"\n== {title}{note}")
        try:
            with progress.waiting(f"searching ({title})", show=show):
                result = search(collection, inputs, limit=limit, **options)  # type: ignore[arg-type]
        except ImageBindError as exc:
            say(f"   error: {exc}")
            ok = False
            continue
        say(format_table(result))
    say(f"\n== zero-shot classification of beep_440hz.wav{note}")
    try:
        with progress.waiting("classifying", show=show):
            scores = classify(server, QueryInput.of(InputKind.AUDIO, media / "beep_440hz.wav"),  # type: ignore[arg-type]
                              ["a beep", "a dog barking", "rain", "a car engine", "speech"])
        say(format_scores(scores))
    except ImageBindError as exc:
        say(f"   error: {exc}")
        ok = False
    return ok

