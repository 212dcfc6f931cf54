"""Test media generated in code: images, tones and noise in several containers, short videos,
depth and thermal maps, IMU recordings. Nothing here needs a file from outside the tests."""

from __future__ import annotations

import csv
import io
import math
import wave
from fractions import Fraction

import av
import numpy as np
from PIL import Image, ImageDraw

RNG_SEED = 1234


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(RNG_SEED + seed)


# Images ------------------------------------------------------------------------------------------
def picture(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A colourful synthetic RGB scene: a gradient, shapes and a little noise."""
    rng = _rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([
        (x * 255 / max(width - 1, 1)),
        (y * 255 / max(height - 1, 1)),
        ((x + y) * 127 / max(width + height - 2, 1) + 64 * (seed % 3)),
    ], axis=-1)
    base = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, width - 10)), int(rng.integers(0, height - 10))
        x1, y1 = x0 + int(rng.integers(5, width // 2)), y0 + int(rng.integers(5, height // 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=color)
    return image


def encode_image(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def image_bytes(fmt: str = "PNG", width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    return encode_image(picture(width, height, seed), fmt)


def image_variants() -> dict[str, bytes]:
    """One image per input flavour the issue names: formats, modes, animation, EXIF rotation."""
    base = picture(300, 200, seed=1)
    gray16 = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    frames = [picture(160, 120, seed=s) for s in (2, 3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return {
        "jpeg": encode_image(base, "JPEG", quality=90),
        "png": encode_image(base, "PNG"),
        "webp": encode_image(base, "WEBP", quality=90),
        "gif-animated": gif.getvalue(),
        "png-16bit-gray": encode_image(gray16, "PNG"),
        "png-palette": encode_image(base.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "png-rgba": encode_image(base.convert("RGBA"), "PNG"),
        "jpeg-cmyk": encode_image(base.convert("CMYK"), "JPEG"),
        "jpeg-exif-rotated": encode_image(base, "JPEG", exif=exif.tobytes()),
        "png-portrait": image_bytes("PNG", 200, 310, seed=4),
        "png-small": image_bytes("PNG", 64, 48, seed=5),
    }


def depth_png_8bit(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    depth = (40 + 180 * (x / width) * (0.6 + 0.4 * np.sin(y / 17 + seed))).astype(np.uint8)
    return encode_image(Image.fromarray(depth), "PNG")


def depth_png_16bit_mm(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    """Metric depth in millimetres (0.5 m .. 6 m), with a hole of zeros (no reading)."""
    y, x = np.mgrid[0:height, 0:width]
    depth = 500 + 5500 * (x / width) * (0.5 + 0.5 * np.cos(y / 23 + seed))
    depth[10:30, 10:40] = 0
    return encode_image(Image.fromarray(depth.astype(np.uint16)), "PNG")


def thermal_jpeg(width: int = 320, height: int = 256, seed: int = 0) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    heat = np.exp(-(((x - width * 0.6) ** 2 + (y - height * 0.4) ** 2) / (2 * (40 + 10 * seed) ** 2)))
    gray = (30 + 200 * heat + _rng(seed).normal(0, 4, heat.shape)).clip(0, 255).astype(np.uint8)
    return encode_image(Image.fromarray(gray).convert("RGB"), "JPEG", quality=92)


# Audio -------------------------------------------------------------------------------------------
def tone(seconds: float = 3.0, rate: int = 44100, freq: float = 440.0, channels: int = 1,
         noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """(channels, samples) float32 in [-1, 1]: a tone plus noise, each channel a little different."""
    t = np.arange(int(seconds * rate)) / rate
    rng = _rng(seed)
    signal = [0.5 * np.sin(2 * math.pi * (freq * (1 + 0.1 * c)) * t) + noise * rng.standard_normal(t.size)
              for c in range(channels)]
    return np.clip(np.stack(signal), -1, 1).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV written with the standard library."""
    pcm = (np.clip(samples, -1, 1) * 32767).round().astype("<i2").T.reshape(-1)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(samples.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def encoded_audio(samples: np.ndarray, rate: int, container: str, codec: str,
                  muxer_options: dict[str, str] | None = None, sample_format: str | None = None) -> bytes:
    """Encode with FFmpeg through PyAV (flac, mp3, ogg/opus, m4a/aac, ...). Muxer options such as
    Matroska's {"live": "1"} write a stream without a duration in its header. `sample_format` picks
    the encoder's input format where its first choice would lose bits (WavPack's is u8p)."""
    out = io.BytesIO()
    layout = channel_layout(samples.shape[0])
    with av.open(out, mode="w", format=container, options=muxer_options or {}) as c:
        stream = c.add_stream(codec, rate=rate, layout=layout)
        if sample_format:
            stream.codec_context.format = sample_format
        frame_size = stream.codec_context.frame_size or 1024
        pcm = (np.clip(samples, -1, 1) * 32767).round().astype(np.int16)
        for start in range(0, pcm.shape[1], frame_size):
            chunk = np.ascontiguousarray(pcm[:, start:start + frame_size].T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return out.getvalue()


def channel_layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels} channels")


def sparse_audio(seconds: float, rate: int, channels: int, container: str = "flac", codec: str = "flac") -> bytes:
    """A long recording that compresses to almost nothing: silence with a one-second tone each
    minute, encoded frame by frame (the samples are never all in memory)."""
    out = io.BytesIO()
    layout = channel_layout(channels)
    with av.open(out, mode="w", format=container) as c:
        stream = c.add_stream(codec, rate=rate, layout=layout)
        size = stream.codec_context.frame_size or 4096
        total = int(seconds * rate)
        ramp = np.arange(size)
        for start in range(0, total, size):
            count = min(size, total - start)
            block = np.zeros((count, channels), np.int16)
            if (start // rate) % 60 == 0:
                block[:] = (3000 * np.sin(2 * math.pi * 440 * (start + ramp[:count]) / rate)).astype(np.int16)[:, None]
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return out.getvalue()


AUDIO_FORMATS = {  # name -> (container, codec, rate)
    "flac": ("flac", "flac", 22050),
    "mp3": ("mp3", "libmp3lame", 44100),
    "ogg-opus": ("ogg", "libopus", 48000),
    "m4a-aac": ("mp4", "aac", 32000),
}


def audio_bytes(fmt: str = "wav", seconds: float = 3.0, channels: int = 1, freq: float = 440.0,
                seed: int = 0) -> bytes:
    if fmt == "wav":
        return wav_bytes(tone(seconds, 44100, freq, channels, seed=seed), 44100)
    container, codec, rate = AUDIO_FORMATS[fmt]
    return encoded_audio(tone(seconds, rate, freq, channels, seed=seed), rate, container, codec)


# Video -------------------------------------------------------------------------------------------
def video_bytes(seconds: float = 3.0, fps: int | Fraction = 10, width: int = 256, height: int = 192,
                container: str = "mp4", codec: str = "libx264", seed: int = 0,
                options: dict[str, str] | None = None, muxer_options: dict[str, str] | None = None) -> bytes:
    """A moving-shapes clip; each frame differs so frame selection shows in the embeddings.
    `options` are encoder options (e.g. x264's B-frames); the defaults favour encoding speed."""
    out = io.BytesIO()
    frames = round(seconds * fps)
    with av.open(out, mode="w", format=container, options=muxer_options or {}) as c:
        stream = c.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if options is not None:
            stream.options = options
        elif codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18"}
        elif codec.startswith("libvpx"):
            stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for index in range(frames):
            image = picture(width, height, seed=seed * 1000 + index)
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return out.getvalue()


def long_video(seconds: float, fps: int = 10, width: int = 640, height: int = 480,
               muxer_options: dict[str, str] | None = None) -> bytes:
    """A long video that is quick to make: eight pictures shown in turn."""
    pictures = [av.VideoFrame.from_image(picture(width, height, seed=s)) for s in range(8)]
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4" if muxer_options is None else "matroska",
                 options=muxer_options or {}) as c:
        stream = c.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30"}
        for index in range(round(seconds * fps)):
            frame = pictures[(index // fps) % len(pictures)]
            frame.pts = None
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return out.getvalue()


VIDEO_FORMATS = {  # name -> (container, codec)
    "mp4": ("mp4", "libx264"),
    "webm": ("webm", "libvpx-vp9"),
    "mkv": ("matroska", "libx264"),
    "avi": ("avi", "mpeg4"),
}


# IMU ---------------------------------------------------------------------------------------------
IMU_HEADER = ["gyro_x", "gyro_y", "gyro_z", "accl_x", "accl_y", "accl_z"]


def imu_samples(n: int = 2000, seed: int = 0) -> np.ndarray:
    """(6, n): three gyroscope then three accelerometer channels with distinct motions."""
    t = np.arange(n) / 400.0
    rng = _rng(seed)
    channels = [np.sin(2 * math.pi * (0.5 + c) * t + seed) * (c + 1) + 0.05 * rng.standard_normal(n)
                for c in range(6)]
    channels[5] += 9.81
    return np.stack(channels).astype(np.float32)


def imu_csv(samples: np.ndarray, header: list[str] | None = IMU_HEADER, extra_columns: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    rows = samples.T.tolist()
    if extra_columns:
        header = ["timestamp_ms", *(header or IMU_HEADER)]
        rows = [[i * 2.5, *row] for i, row in enumerate(rows)]
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def imu_npy(samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, samples)
    return out.getvalue()


# Long recordings with distinct content per window (moment search) -----------------------------
def window_tone(seconds: float, rate: int, window_s: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(channels, samples) float32: window k holds its own chord and noise, so every window embeds
    differently and a moment can be told from its neighbours."""
    total = int(seconds * rate)
    out = np.empty((channels, total), dtype=np.float32)
    per_window = int(window_s * rate)
    for start in range(0, total, per_window):
        index = start // per_window
        rng = _rng(seed * 7919 + index)
        n = min(per_window, total - start)
        t = np.arange(n) / rate
        freqs = 110.0 * 2 ** (rng.integers(0, 48, 3) / 12)
        for c in range(channels):
            signal = sum(0.25 * np.sin(2 * math.pi * f * (1 + 0.01 * c) * t) for f in freqs)
            out[c, start:start + n] = np.clip(signal + 0.05 * rng.standard_normal(n), -1, 1)
    return out


def window_video_bytes(seconds: float, fps: int | Fraction, window_s: float, width: int = 96, height: int = 72,
                       audio_rate: int | None = None, container: str = "mp4", codec: str = "libx264",
                       audio_codec: str = "aac", seed: int = 0) -> bytes:
    """A video whose pictures (and soundtrack, with `audio_rate`) change scene every `window_s`
    seconds; inside a scene the picture drifts a little each frame. Cheap to make at low sizes."""
    out = io.BytesIO()
    frames = round(seconds * fps)
    with av.open(out, mode="w", format=container) as c:
        stream = c.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"} if codec == "libx264" else {}
        sound = None
        if audio_rate:
            sound = c.add_stream(audio_codec, rate=audio_rate, layout="mono")
            samples = window_tone(seconds, audio_rate, window_s, seed=seed)
            pcm = (samples * 32767).round().astype(np.int16)
            frame_size = sound.codec_context.frame_size or 1024
            audio_at = 0
        scene, scene_index = None, -1
        for index in range(frames):
            current = int(index / fps // window_s)
            if current != scene_index:  # a scene of its own: shapes, and a colour cast of its own
                tint = _rng(seed * 1000 + current).uniform(0.15, 1.0, 3)
                base = np.asarray(picture(width, height, seed=seed * 1000 + current), dtype=np.float32)
                scene, scene_index = (base * tint).astype(np.uint8), current
            shifted = np.roll(scene, shift=index % 7, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(shifted, format="rgb24")):
                c.mux(packet)
            if sound is not None:  # interleave the soundtrack up to this frame's time
                until = min(int((index + 1) / fps * audio_rate), pcm.shape[1])
                while audio_at + frame_size <= until or (index == frames - 1 and audio_at < pcm.shape[1]):
                    chunk = np.ascontiguousarray(pcm[:, audio_at:audio_at + frame_size])
                    frame = av.AudioFrame.from_ndarray(chunk, format="s16p", layout="mono")
                    frame.sample_rate, frame.pts, frame.time_base = audio_rate, audio_at, Fraction(1, audio_rate)
                    for packet in sound.encode(frame):
                        c.mux(packet)
                    audio_at += chunk.shape[1]
        for packet in stream.encode(None):
            c.mux(packet)
        if sound is not None:
            for packet in sound.encode(None):
                c.mux(packet)
    return out.getvalue()


def lossless_video_cut(data: bytes | str, first: int, stop: int) -> bytes:
    """Frames [first, stop) of a video as an MP4 of their own, losslessly (x264 qp 0 in the same
    yuv420p, so decoding gives the very pixels the source decoded to)."""
    out = io.BytesIO()
    with av.open(io.BytesIO(data) if isinstance(data, bytes) else data) as src, \
            av.open(out, mode="w", format="mp4") as dst:
        stream = src.streams.video[0]
        target = dst.add_stream("libx264", rate=stream.average_rate)
        target.width, target.height = stream.codec_context.width, stream.codec_context.height
        target.pix_fmt = "yuv420p"
        target.options = {"preset": "ultrafast", "qp": "0"}
        for index, frame in enumerate(src.decode(stream)):
            if index >= stop:
                break
            if index >= first:
                copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
                for packet in target.encode(copy):
                    dst.mux(packet)
        for packet in target.encode(None):
            dst.mux(packet)
    return out.getvalue()


def decoded_audio(data: bytes | str) -> tuple[np.ndarray, int]:
    """(channels, samples) float32 and rate of the first audio stream, decoded in full."""
    with av.open(io.BytesIO(data) if isinstance(data, bytes) else data) as src:
        stream = src.streams.audio[0]
        chunks = [frame.to_ndarray().astype(np.float32) for frame in src.decode(stream)]
        return np.concatenate(chunks, axis=1), stream.rate


def float_wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """32-bit float WAV: decoded (non-16-bit) samples written without rounding."""
    out = io.BytesIO()
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(out, mode="w", format="wav") as c:
        stream = c.add_stream("pcm_f32le", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T.reshape(1, -1), dtype=np.float32),
                                           format="flt", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in stream.encode(frame):
            c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return out.getvalue()
