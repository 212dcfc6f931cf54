#!/usr/bin/env python3
"""Generate the demo's sample media (imagebind_vectorizer/sample_media/): drawn pictures, synthetic
sounds, a short animation, a depth map, a thermal image and IMU recordings. Everything is made
here from code (no outside files, so no licence questions) and kept small enough to commit.

    python scripts/make_sample_media.py            # rewrite the folder
    python scripts/make_sample_media.py --check    # list what would be written, with sizes

The folder is flat (the package data glob is `sample_media/*`), so depth and thermal images carry
their hint in a sidecar JSON; everything else is described by manifest.csv."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.media import encoded_audio, imu_csv, wav_bytes  # noqa: E402

OUT = ROOT / "imagebind_vectorizer" / "sample_media"
W, H = 256, 192
RATE = 16000


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


# Pictures ----------------------------------------------------------------------------------------
def sunset() -> Image.Image:
    y = np.linspace(0, 1, H)[:, None, None]
    sky = (1 - y) * np.array([255, 140, 40]) + y * np.array([120, 40, 110])
    img = np.broadcast_to(sky, (H, W, 3)).copy()
    img[int(H * 0.62):] = np.array([20, 50, 110]) + np.random.default_rng(1).normal(0, 6, (H - int(H * 0.62), W, 3))
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    cx, cy, r = W // 2, int(H * 0.62), 38
    draw.pieslice([cx - r, cy - r, cx + r, cy + r], 180, 360, fill=(255, 220, 60))
    for i in range(6):
        draw.line([cx - 60 + i * 6, cy + 10 + i * 9, cx + 60 - i * 6, cy + 10 + i * 9], fill=(250, 190, 70), width=2)
    return image


def red_square() -> Image.Image:
    image = Image.new("RGB", (W, H), (245, 245, 240))
    ImageDraw.Draw(image).rectangle([78, 46, 178, 146], fill=(210, 30, 30))
    return image


def checkerboard() -> Image.Image:
    y, x = np.mgrid[0:H, 0:W]
    board = (((x // 32) + (y // 32)) % 2 * 255).astype(np.uint8)
    return Image.fromarray(board).convert("RGB")


def room_depth() -> Image.Image:
    """A corridor-like depth map: near at the edges (bright = near, 8-bit disparity-like)."""
    y, x = np.mgrid[0:H, 0:W]
    dx, dy = np.abs(x - W / 2) / (W / 2), np.abs(y - H / 2) / (H / 2)
    near = np.maximum(dx, dy)
    near[int(H * 0.55):int(H * 0.85), 40:90] = 0.9  # a box standing close by
    return Image.fromarray((30 + 200 * near).astype(np.uint8))


def thermal_hand() -> Image.Image:
    """A warm hand-like blob on a cool background, as a grayscale thermal camera renders it."""
    image = Image.new("L", (W, H), 40)
    draw = ImageDraw.Draw(image)
    draw.ellipse([90, 90, 170, 175], fill=200)
    for i in range(5):
        x0 = 92 + i * 16
        draw.rounded_rectangle([x0, 30 + abs(2 - i) * 12, x0 + 12, 110], radius=6, fill=190)
    return image.filter(ImageFilter.GaussianBlur(4)).convert("RGB")


# Sounds ------------------------------------------------------------------------------------------
def beep(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = np.minimum(1, np.minimum(t, seconds - t) * 40)
    return (0.5 * np.sin(2 * math.pi * 440 * t) * envelope)[None].astype(np.float32)


def waves(seconds: float = 3.0) -> np.ndarray:
    """Low-passed noise swelling slowly, like surf."""
    n = int(seconds * RATE)
    noise = np.random.default_rng(3).standard_normal(n)
    kernel = np.ones(40) / 40
    smooth = np.convolve(noise, kernel, mode="same")
    swell = 0.4 + 0.6 * np.sin(2 * math.pi * np.arange(n) / RATE / 3.0) ** 2
    signal = smooth * swell
    return (0.8 * signal / np.abs(signal).max())[None].astype(np.float32)


def chirp(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    freq = 300 + 1500 * t / seconds
    phase = 2 * math.pi * np.cumsum(freq) / RATE
    return (0.4 * np.sin(phase))[None].astype(np.float32)


# Video -------------------------------------------------------------------------------------------
def bouncing_ball(seconds: float = 2.0, fps: int = 10) -> bytes:
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = 160, 120
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryslow", "crf": "30"}
        for i in range(int(seconds * fps)):
            frame = Image.new("RGB", (160, 120), (30, 110, 40))
            x = 20 + i * 6
            y = 90 - int(60 * abs(math.sin(i * math.pi / 8)))
            ImageDraw.Draw(frame).ellipse([x - 10, y - 10, x + 10, y + 10], fill=(250, 250, 250))
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


# IMU ---------------------------------------------------------------------------------------------
def imu(kind: str, n: int = 600, rate: float = 200.0) -> np.ndarray:
    """(6, n): gyro x/y/z then accelerometer x/y/z for walking (~2 steps/s) or running (~3/s)."""
    t = np.arange(n) / rate
    rng = np.random.default_rng(7 if kind == "walking" else 8)
    step = 2.0 if kind == "walking" else 3.0
    amp = 1.0 if kind == "walking" else 2.5
    gyro = [amp * 0.5 * np.sin(2 * math.pi * step / 2 * t + p) for p in (0, 1, 2)]
    acc = [amp * np.sin(2 * math.pi * step * t), amp * 0.3 * np.cos(2 * math.pi * step * t),
           9.81 + amp * 2 * np.abs(np.sin(2 * math.pi * step / 2 * t))]
    data = np.stack(gyro + acc) + 0.03 * rng.standard_normal((6, n))
    return np.round(data, 3).astype(np.float32)


def imu_text(samples: np.ndarray) -> bytes:
    # Three decimals keep the files small; same header as tests/media.py.
    text = imu_csv(samples).decode()
    lines = text.splitlines()
    rows = [",".join(f"{float(v):.3f}" for v in line.split(",")) for line in lines[1:]]
    return ("\n".join([lines[0], *rows]) + "\n").encode()


def build() -> dict[str, bytes]:
    files: dict[str, bytes] = {
        "sunset.jpg": jpeg(sunset()),
        "red_square.png": png(red_square()),
        "checkerboard.png": png(checkerboard()),
        "beep_440hz.wav": wav_bytes(beep(), RATE),
        "waves.flac": encoded_audio(waves(), RATE, "flac", "flac"),
        "chirp.mp3": encoded_audio(chirp(), RATE, "mp3", "libmp3lame"),
        "bouncing_ball.mp4": bouncing_ball(),
        "room_depth.png": png(room_depth()),
        "room_depth.png.json": json.dumps({"modality": "depth", "title": "depth map of a corridor with a box",
                                           "category": "depth"}, indent=1).encode() + b"\n",
        "warm_hand_thermal.jpg": jpeg(thermal_hand()),
        "warm_hand_thermal.jpg.json": json.dumps({"modality": "thermal", "title": "thermal image of a warm hand",
                                                  "category": "thermal"}, indent=1).encode() + b"\n",
        "walking.csv": imu_text(imu("walking")),
        "running.csv": imu_text(imu("running")),
        "note.txt": b"A short note: the sun sets over a calm sea while waves roll onto the beach.\n",
    }
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\n")
    writer.writerow(["file", "title", "category", "group"])
    writer.writerows([
        ["sunset.jpg", "a sunset over the sea, with the sound of waves", "scene", "beach"],
        ["waves.flac", "", "", "beach"],
        ["red_square.png", "a red square on a white background", "picture", ""],
        ["checkerboard.png", "a black and white checkerboard", "picture", ""],
        ["beep_440hz.wav", "a 440 Hz beep", "sound", ""],
        ["chirp.mp3", "a rising whistle (chirp)", "sound", ""],
        ["bouncing_ball.mp4", "a white ball bouncing across a green field", "motion", ""],
        ["walking.csv", "IMU recording of a person walking", "sensor", ""],
        ["running.csv", "IMU recording of a person running", "sensor", ""],
        ["note.txt", "a note about the beach", "text", ""],
    ])
    files["manifest.csv"] = manifest.getvalue().encode()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only list the files and sizes")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    files = build()
    total = 0
    for name, data in sorted(files.items()):
        total += len(data)
        print(f"{len(data):8d}  {name}")
        if not args.check:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / name).write_bytes(data)
    if not args.check:
        for stale in args.out.iterdir():
            if stale.is_file() and stale.name not in files:
                stale.unlink()
    print(f"{total:8d}  total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
