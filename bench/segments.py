"""Moment search: memory and throughput of segmenting long files (VectorizeSegments), on one machine,
in one run. It is not a test: it asserts nothing and, on the huge architecture, takes an hour or
more on 2 CPU cores.

    python -m bench.segments                                   # huge, random weights, float32 and bfloat16
    python -m bench.segments --model-config tiny.json --audio-seconds 300 --video-seconds 60   # the harness only

For each dtype and kind (audio, video):

1. **memory** — two fresh servers: one embeds a single 10-s item (a video's with its soundtrack)
   through `POST /vectorize`, the
   other segments a long file (`--audio-seconds`, default 3600; `--video-seconds`, default 600)
   through VectorizeSegments; each server's peak resident memory (VmHWM) afterwards, and the ratio
   (the issue's target: within +25%).
2. **throughput** — on one server, `--concurrency` clients: each streams a file of
   `--throughput-windows` windows through VectorizeSegments, then (same server, same run) each sends
   the very same windows, cut out as files of their own, one by one as separate `/vectorize`
   requests (for a video, one request per window with its pictures and its soundtrack: a video
   segment carries both vectors). Media-seconds per second for both, and the ratio.

Media is generated in code: audio 16 kHz mono WAV with a different chord every 10 s; video
`--video-size` at `--video-fps` with an AAC soundtrack, a new scene every 10 s. Results: JSON in
`--out` and a summary on stdout, with the hardware named."""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import http.client
import json
import math
import time
from pathlib import Path
from typing import Any

from bench.run import hardware, random_checkpoint
from bench.server import ServerProcess
from imagebind_vectorizer.client.segments import SegmentClient
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.moments import WindowSpec
from tests import media

WINDOW = WindowSpec(10.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.segments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", dest="dtypes", default="float32,bfloat16")
    parser.add_argument("--model-config", default="huge")
    parser.add_argument("--kinds", default="audio,video")
    parser.add_argument("--audio-seconds", type=float, default=3600.0, help="long audio for the memory run")
    parser.add_argument("--video-seconds", type=float, default=600.0, help="long video for the memory run")
    parser.add_argument("--video-size", default="640x360")
    parser.add_argument("--video-fps", type=int, default=10)
    parser.add_argument("--throughput-windows", type=int, default=12, help="windows per file in the throughput run")
    parser.add_argument("--concurrency", type=int, default=1, help="clients in the throughput run (both ways)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    return parser.parse_args(argv)


# Media ----------------------------------------------------------------------------------------------------
def make_media(folder: Path, kind: InputKind, seconds: float, args: argparse.Namespace, name: str) -> Path:
    path = folder / f"{name}.{'wav' if kind is InputKind.AUDIO else 'mp4'}"
    if path.exists():
        return path
    if kind is InputKind.AUDIO:
        path.write_bytes(media.wav_bytes(media.window_tone(seconds, 16000, WINDOW.seconds, seed=3), 16000))
    else:
        width, height = (int(v) for v in args.video_size.split("x"))
        path.write_bytes(media.window_video_bytes(seconds, args.video_fps, WINDOW.seconds, width, height,
                                                  audio_rate=16000, seed=3))
    return path


def window_files(path: Path, kind: InputKind, windows: int, fps: int) -> list[dict[InputKind, bytes]]:
    """The file's first `windows` windows, each cut out as files of its own (exactly the samples or
    frames the segment decoder uses for that window): for a video, its pictures and its soundtrack,
    since a video segment carries both vectors."""
    samples, rate = media.decoded_audio(str(path))
    step = int(WINDOW.seconds * rate)
    sounds = [media.float_wav_bytes(samples[:, i * step:(i + 1) * step], rate) for i in range(windows)]
    if kind is InputKind.AUDIO:
        return [{InputKind.AUDIO: sound} for sound in sounds]
    data = path.read_bytes()
    frames = int(WINDOW.seconds * fps)
    return [{InputKind.VIDEO: media.lossless_video_cut(data, i * frames, (i + 1) * frames), InputKind.AUDIO: sound}
            for i, sound in enumerate(sounds)]


# Clients ----------------------------------------------------------------------------------------------------
def vectorize(port: int, items: dict[InputKind, bytes]) -> None:
    """One /vectorize request with one item per kind (a window's pictures and its sound together)."""
    body = json.dumps({kind.facts.request_key: [base64.b64encode(data).decode()]
                       for kind, data in items.items()}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    try:
        conn.putrequest("POST", "/vectorize", skip_accept_encoding=True)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"/vectorize answered {response.status}: {answer[:300]!r}")
    finally:
        conn.close()


def segment_stream(address: str, path: Path, kind: InputKind) -> int:
    with SegmentClient(address) as client:
        return sum(1 for _ in client.segments(path, kind, WINDOW))


def server_args(args: argparse.Namespace, dtype: str, kind: InputKind) -> list[str]:
    modalities = "audio" if kind is InputKind.AUDIO else "vision,audio"
    return ["--checkpoint", str(random_checkpoint(args.model_config)), "--model-config", args.model_config,
            "--device", args.device, "--dtype", dtype, "--modalities", modalities, "--max-batch-size",
            str(args.max_batch_size), "--cache-size", "0", "--max-segment-streams", str(max(2, args.concurrency))]


# Runs ---------------------------------------------------------------------------------------------------------
def memory(args: argparse.Namespace, dtype: str, kind: InputKind, folder: Path, logs: Path) -> dict[str, Any]:
    seconds = args.audio_seconds if kind is InputKind.AUDIO else args.video_seconds
    long = make_media(folder, kind, seconds, args, f"long-{int(seconds)}s")
    single = window_files(make_media(folder, kind, WINDOW.seconds, args, "single-10s"), kind, 1, args.video_fps)[0]
    result: dict[str, Any] = {"kind": kind.value, "dtype": dtype, "file_seconds": seconds}
    with ServerProcess(server_args(args, dtype, kind), logs / f"memory-single-{kind.value}-{dtype}.log") as server:
        result["ready_rss_mib"] = server.peak_rss_mib()
        started = time.monotonic()
        vectorize(server.http_port, single)
        result["single_seconds"] = time.monotonic() - started
        result["single_peak_rss_mib"] = server.peak_rss_mib()
    with ServerProcess(server_args(args, dtype, kind), logs / f"memory-long-{kind.value}-{dtype}.log") as server:
        started = time.monotonic()
        result["windows"] = segment_stream(f"127.0.0.1:{server.grpc_port}", long, kind)
        result["long_seconds"] = time.monotonic() - started
        result["long_peak_rss_mib"] = server.peak_rss_mib()
    result["peak_ratio"] = result["long_peak_rss_mib"] / result["single_peak_rss_mib"]
    print(f"memory {kind.value:5s} {dtype:8s}: single 10-s item peak {result['single_peak_rss_mib']:.0f} MiB, "
          f"{seconds:g}-s file ({result['windows']} windows) peak {result['long_peak_rss_mib']:.0f} MiB "
          f"= {result['peak_ratio']:.3f}x (ready: {result['ready_rss_mib']:.0f} MiB)", flush=True)
    return result


def throughput(args: argparse.Namespace, dtype: str, kind: InputKind, folder: Path, logs: Path) -> dict[str, Any]:
    seconds = args.throughput_windows * WINDOW.seconds
    path = make_media(folder, kind, seconds, args, f"throughput-{int(seconds)}s")
    windows = window_files(path, kind, args.throughput_windows, args.video_fps)
    clients = args.concurrency
    result: dict[str, Any] = {"kind": kind.value, "dtype": dtype, "concurrency": clients, "windows": len(windows),
                              "media_seconds_per_client": seconds}
    with ServerProcess(server_args(args, dtype, kind), logs / f"throughput-{kind.value}-{dtype}.log") as server:
        address = f"127.0.0.1:{server.grpc_port}"
        vectorize(server.http_port, windows[0])  # warm-up, not counted
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            started = time.monotonic()
            counts = list(pool.map(lambda _: segment_stream(address, path, kind), range(clients)))
            segmented = time.monotonic() - started
            assert all(c == len(windows) for c in counts), counts

            def one_by_one(_: int) -> None:
                for items in windows:
                    vectorize(server.http_port, items)

            started = time.monotonic()
            list(pool.map(one_by_one, range(clients)))
            separate = time.monotonic() - started
    result["segments_media_s_per_s"] = clients * seconds / segmented
    result["vectorize_media_s_per_s"] = clients * seconds / separate
    result["ratio"] = result["segments_media_s_per_s"] / result["vectorize_media_s_per_s"]
    print(f"throughput {kind.value:5s} {dtype:8s} x{clients}: VectorizeSegments "
          f"{result['segments_media_s_per_s']:.2f} media-s/s, the same windows as /vectorize requests "
          f"{result['vectorize_media_s_per_s']:.2f} media-s/s = {result['ratio']:.2f}x", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out
    folder, logs = out / "segment-media", out / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"hardware": hardware(args.device), "settings": vars(args) | {"out": str(out)},
                              "memory": [], "throughput": []}
    print(f"hardware: {json.dumps(record['hardware'])}", flush=True)
    for dtype in (d.strip() for d in args.dtypes.split(",") if d.strip()):
        for kind in (InputKind.parse(k) for k in args.kinds.split(",") if k.strip()):
            if not args.skip_memory:
                record["memory"].append(memory(args, dtype, kind, folder, logs))
            if not args.skip_throughput:
                record["throughput"].append(throughput(args, dtype, kind, folder, logs))
    path = out / f"segments-{stamp}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {path}")
    with contextlib.suppress(ValueError):
        worst = max((m["peak_ratio"] for m in record["memory"]), default=math.nan)
        print(f"largest long-file / single-item peak ratio: {worst:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
