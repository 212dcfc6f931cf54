"""Kind detection from bytes, whatever the file is called. No server."""

from __future__ import annotations

import numpy as np
import pytest

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.weaviate.detect import sniff
from tests import media

PICTURE = media.picture(64, 48, seed=3)


@pytest.mark.parametrize(("data", "kind", "fmt"), [
    (media.encode_image(PICTURE, "JPEG"), InputKind.IMAGE, "jpeg"),
    (media.encode_image(PICTURE, "PNG"), InputKind.IMAGE, "png"),
    (media.image_variants()["gif-animated"], InputKind.IMAGE, "gif"),
    (media.encode_image(PICTURE, "WEBP"), InputKind.IMAGE, "webp"),
    (media.encode_image(PICTURE, "BMP"), InputKind.IMAGE, "bmp"),
    (media.encode_image(PICTURE, "TIFF"), InputKind.IMAGE, "tiff"),
    (media.audio_bytes("wav", 0.5), InputKind.AUDIO, "wav"),
    (media.audio_bytes("flac", 0.5), InputKind.AUDIO, "flac"),
    (media.audio_bytes("mp3", 0.5), InputKind.AUDIO, "mp3"),
    (media.audio_bytes("ogg-opus", 0.5), InputKind.AUDIO, "ogg"),
    (media.audio_bytes("m4a-aac", 0.5), InputKind.AUDIO, "m4a"),  # an MP4 container with only a sound track
    (media.video_bytes(0.5, 4, 64, 48, "mp4", "libx264"), InputKind.VIDEO, "mp4"),
    (media.video_bytes(0.5, 4, 64, 48, "webm", "libvpx-vp9"), InputKind.VIDEO, "webm"),
    (media.video_bytes(0.5, 4, 64, 48, "matroska", "libx264"), InputKind.VIDEO, "mkv"),
    (media.video_bytes(0.5, 4, 64, 48, "avi", "mpeg4"), InputKind.VIDEO, "avi"),
    (media.imu_csv(media.imu_samples(50)), InputKind.IMU, "csv"),
    (media.imu_csv(media.imu_samples(50), header=None), InputKind.IMU, "csv"),
    (media.imu_csv(media.imu_samples(50), extra_columns=True), InputKind.IMU, "csv"),
    (media.imu_npy(media.imu_samples(50)), InputKind.IMU, "npy"),
    (b"A caption, with commas, in plain text.\nSecond line.", InputKind.TEXT, "txt"),
    (b"name,city,notes\nana,lisboa,likes sea\n", InputKind.TEXT, "txt"),
], ids=["jpeg", "png", "gif", "webp", "bmp", "tiff", "wav", "flac", "mp3", "ogg", "m4a", "mp4", "webm", "mkv", "avi",
        "csv", "csv-no-header", "csv-timestamps", "npy", "text", "text-csv"])
def test_sniff_tells_kinds_apart_by_content(data: bytes, kind: InputKind, fmt: str):
    detected = sniff(data)
    assert detected is not None
    assert (detected.kind, detected.format) == (kind, fmt)


def test_sniff_gives_up_on_unknown_bytes():
    assert sniff(b"") is None
    assert sniff(bytes(range(256)) * 4) is None
    assert sniff(np.random.default_rng(0).bytes(4096)) is None
