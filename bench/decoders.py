"""What decoding costs: per-item overhead of the decoder processes against preprocessing in
process, and the cost of the hostile inputs of issue 8 as they are handled now.

    python -m bench.decoders                  # about two minutes on 2 CPU cores
    python -m bench.decoders --items 40 --kinds image,audio

Per-item overhead: the same items are preprocessed alternately (A B A B ...) in this process, with
torch's default threads and with one thread (what a decoder process uses), and through a
`DecodePool` of one worker process (already started): the pool's figure includes handing the bytes
over and the tensor back through a pipe. Hostile inputs each run in a fresh process, which reports
its CPU seconds and its peak RSS above what it held after a small warm-up of the same kind. Not a
test: nothing is asserted. Numbers depend on the machine (printed first) and on its load."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.inputs import make_media
from bench.run import hardware
from imagebind_vectorizer.engine.decode_pool import DecodePool
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions, preprocess
from tests import media

ROOT = Path(__file__).resolve().parents[1]


async def overhead(kind: InputKind, items: int) -> dict[str, float]:
    """Median wall ms per item: in process (default threads, one thread) and through the pool."""
    options = PreprocessOptions()
    files = [make_media(kind, seed) for seed in range(4)]
    pool = DecodePool(1)
    await pool.preprocess(kind, files[0], options)  # the worker is started and warm
    default_threads = torch.get_num_threads()
    timings: dict[str, list[float]] = {"in_process": [], "in_process_1_thread": [], "pool": []}
    for index in range(items):
        data = files[index % len(files)]
        for name in timings:
            started = time.perf_counter()
            if name == "pool":
                await pool.preprocess(kind, data, options)
            else:
                torch.set_num_threads(1 if name == "in_process_1_thread" else default_threads)
                preprocess(kind, data, options)
            timings[name].append((time.perf_counter() - started) * 1000)
    torch.set_num_threads(default_threads)
    pool.close()
    result = {name: statistics.median(values) for name, values in timings.items()}
    result["overhead_vs_1_thread"] = result["pool"] - result["in_process_1_thread"]
    return result


_PROBE = """
import json, resource, sys, time
from imagebind_vectorizer.errors import InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess import PreprocessOptions, Profile, preprocess
kind, path, warm, profile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
options = PreprocessOptions(profile=Profile(profile))
def run(p):
    try:
        preprocess(InputKind(kind), open(p, 'rb').read(), options)
        return "accepted"
    except InputError as exc:
        return f"400 {exc.reason}"
run(warm)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
cpu = time.process_time()
outcome = run(path)
print(json.dumps({"cpu_s": time.process_time() - cpu, "outcome": outcome,
                  "peak_growth_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base}))
"""


def probe(kind: str, path: Path, warm: Path, profile: str = "official") -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _PROBE, kind, str(path), str(warm), profile], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        return {"outcome": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def hostile(folder: Path) -> dict[str, dict[str, object]]:
    rng = random.Random(0)

    def write(name: str, data: bytes) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    warm_audio = write("warm.wav", media.wav_bytes(media.tone(3, 96000, channels=6), 96000))
    warm_video = write("warm.mp4", media.video_bytes(3, 10, 640, 480))
    warm_imu = write("warm.csv", media.imu_csv(media.imu_samples(2000)))
    warm_text = write("warm.txt", b"a dog on a sofa")
    cases = {
        "audio: FLAC 10 min 96 kHz 6 ch": ("audio", write("long.flac", media.sparse_audio(600, 96000, 6)),
                                           warm_audio, "official"),
        "audio: WAV 0.5 s 16 ch": ("audio", write("many.wav", media.wav_bytes(media.tone(0.5, 16000, channels=16),
                                                                               16000)), warm_audio, "official"),
        "video: 60 s 640x480 10 fps, weaviate-legacy": ("video", write("long.mp4", media.long_video(60)), warm_video,
                                                        "weaviate-legacy"),
        "video: 60 s 640x480 10 fps, official": ("video", folder / "long.mp4", warm_video, "official"),
        "imu: CSV of 10^6 values": ("imu", write("big.csv", media.imu_csv(media.imu_samples(166_667))), warm_imu,
                                    "official"),
        "text: one 1,500-letter random word": ("text", write("w1500.txt", "".join(
            rng.choice(string.ascii_lowercase) for _ in range(1500)).encode()), warm_text, "official"),
        "text: one 4,000-letter random word": ("text", write("w4000.txt", "".join(
            rng.choice(string.ascii_lowercase) for _ in range(4000)).encode()), warm_text, "official"),
        "text: one 20,000-letter random word": ("text", write("w20000.txt", "".join(
            rng.choice(string.ascii_lowercase) for _ in range(20000)).encode()), warm_text, "official"),
    }
    return {name: probe(*case) for name, case in cases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20, help="items per kind for the overhead figures")
    parser.add_argument("--kinds", default="image,audio,video")
    parser.add_argument("--no-hostile", action="store_true", help="only the overhead figures")
    args = parser.parse_args()
    print(json.dumps(hardware("cpu")))
    for name in args.kinds.split(","):
        kind = InputKind.parse(name)
        result = asyncio.run(overhead(kind, args.items))
        print(f"{kind.value:6s} median ms per item: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()))
    if not args.no_hostile:
        with tempfile.TemporaryDirectory() as folder:
            for name, result in hostile(Path(folder)).items():
                figures = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())
                print(f"{name:48s} {figures}")


if __name__ == "__main__":
    main()
