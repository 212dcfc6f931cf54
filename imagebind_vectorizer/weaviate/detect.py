"""What a file holds, decided from its bytes (magic numbers), not its name.

image: JPEG, PNG, GIF, WebP, BMP, TIFF · audio: RIFF/WAVE, FLAC, MP3 (ID3 tag or MPEG frame sync),
AAC (ADTS), Ogg, MP4/M4A without a video track · video: MP4/MOV/3GP with a video track, Matroska and
WebM with a video track, RIFF/AVI · IMU: `.npy` arrays and numeric CSV tables · text: other UTF-8 text.

Depth and thermal maps are ordinary image files; only a hint (sidecar JSON, manifest column or a
`depth/` or `thermal/` folder) says that an image is one of them."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from imagebind_vectorizer.kinds import InputKind


@dataclass(frozen=True)
class Detected:
    kind: InputKind
    format: str  # short format name: "png", "wav", "mp4", "csv", ...


_MATROSKA_VIDEO = re.compile(rb"\x86[\x81-\x88]V_")  # CodecID element holding "V_..."
_MATROSKA_AUDIO = re.compile(rb"\x86[\x81-\x88]A_")
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}


def sniff(data: bytes) -> Detected | None:
    """The input kind and format of `data`, or None when unrecognised."""
    head = data[:64]
    image = _image_format(head)
    if image:
        return Detected(InputKind.IMAGE, image)
    if head[:4] == b"RIFF" and len(head) >= 12:
        form = head[8:12]
        if form == b"WAVE":
            return Detected(InputKind.AUDIO, "wav")
        if form == b"AVI ":
            return Detected(InputKind.VIDEO, "avi")
        return None
    if head[:4] == b"fLaC":
        return Detected(InputKind.AUDIO, "flac")
    if head[:3] == b"ID3":
        return Detected(InputKind.AUDIO, "mp3")
    if head[:4] == b"OggS":
        return Detected(InputKind.VIDEO, "ogv") if b"\x80theora" in data[:4096] else Detected(InputKind.AUDIO, "ogg")
    if head[4:8] == b"ftyp":
        return _iso_media(data)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return _matroska(data)
    if head[:6] == b"\x93NUMPY":
        return Detected(InputKind.IMU, "npy")
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return Detected(InputKind.AUDIO, "aac")  # ADTS: 12-bit sync, layer 00
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0:
        return Detected(InputKind.AUDIO, "mp3")  # MPEG audio frame sync, layer I-III
    return _text(data)


def _image_format(head: bytes) -> str | None:
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 26 and struct.unpack("<I", head[14:18])[0] in (12, 40, 52, 56, 64, 108, 124):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def _iso_media(data: bytes) -> Detected:
    """ISO base media (MP4, MOV, M4A, 3GP): a video handler ('vide' in an hdlr box) makes it a
    video; otherwise it is audio. The moov box may sit at the end, so the whole file is searched."""
    brand = data[8:12]
    handlers = {data[i + 12:i + 16] for i in _find_all(data, b"hdlr")}  # after version/flags, pre_defined
    if b"vide" in handlers:
        return Detected(InputKind.VIDEO, "mov" if brand == b"qt  " else "mp4")
    if b"soun" in handlers or brand in _AUDIO_BRANDS:
        return Detected(InputKind.AUDIO, "m4a")
    return Detected(InputKind.VIDEO, "mp4")


def _find_all(data: bytes, needle: bytes, limit: int = 64) -> list[int]:
    found, start = [], 0
    while len(found) < limit:
        index = data.find(needle, start)
        if index < 0:
            break
        found.append(index)
        start = index + 1
    return found


def _matroska(data: bytes) -> Detected:
    fmt = "webm" if b"webm" in data[:64] else "mkv"
    if _MATROSKA_VIDEO.search(data, 0, 1 << 20) or not _MATROSKA_AUDIO.search(data, 0, 1 << 20):
        return Detected(InputKind.VIDEO, fmt)
    return Detected(InputKind.AUDIO, fmt)


def _text(data: bytes) -> Detected | None:
    if not data or b"\x00" in data[:8192]:
        return None
    try:
        text = data[:1 << 16].decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(data[:1 << 16]) - 4:  # not just a multi-byte character cut at the edge
            return None
        text = data[:exc.start].decode("utf-8-sig")
    if _numeric_table(text):
        return Detected(InputKind.IMU, "csv")
    return Detected(InputKind.TEXT, "txt")


def _numeric_table(text: str) -> bool:
    """A CSV of >= 3 numeric columns, equal in every row, with at most one header row."""
    lines = [line.strip() for line in text.splitlines() if line.strip()][:50]
    if len(lines) < 2:
        return False
    if not _numeric_row(lines[0]):
        lines = lines[1:]
    widths = set()
    for line in lines[:-1] if len(lines) > 2 else lines:  # the last line may be cut off
        if not _numeric_row(line):
            return False
        widths.add(line.count(",") + 1)
    return len(widths) == 1 and widths.pop() >= 3


def _numeric_row(line: str) -> bool:
    cells = [c.strip().strip('"') for c in line.split(",")]
    if len(cells) < 3:
        return False
    try:
        for cell in cells:
            float(cell)
    except ValueError:
        return False
    return True
