"""Benchmark inputs made in code (tests/media.py generators): 5-word texts, 640x480 JPEGs, 5 s
WAVs, 10 s 320x240 MP4s, with ready-made request payloads for both transports."""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.server.grpc_service import MODALITY_OF_KIND
from imagebind_vectorizer.server.proto_gen import vectorizer_pb2 as pb
from imagebind_vectorizer.server.weaviate_http import FIELD_OF_KIND
from tests import media

_WORDS = (
    ("a", "the", "one", "some", "every", "this", "that", "my", "your", "our"),
    ("small", "large", "red", "blue", "quiet", "noisy", "old", "young", "bright", "dark"),
    ("dog", "cat", "car", "river", "city", "forest", "guitar", "train", "bird", "boat"),
    ("near", "under", "beside", "behind", "above", "inside", "across", "along", "past", "around"),
    ("mountains", "houses", "trees", "clouds", "bridges", "fields", "markets", "waves", "roads", "lights"),
)
#: distinct media files per kind (texts are all distinct; the bench server runs with its cache off)
MEDIA_VARIANTS = 4


def five_words(index: int) -> str:
    """The index-th of 100,000 distinct five-word texts."""
    words = []
    for choices in reversed(_WORDS):
        index, digit = divmod(index, len(choices))
        words.append(choices[digit])
    return " ".join(reversed(words))


def make_media(kind: InputKind, seed: int) -> bytes:
    if kind is InputKind.IMAGE:
        return media.image_bytes("JPEG", 640, 480, seed=seed)
    if kind is InputKind.AUDIO:
        return media.audio_bytes("wav", seconds=5.0, freq=220.0 + 55 * seed, seed=seed)
    if kind is InputKind.VIDEO:
        return media.video_bytes(seconds=10.0, fps=10, width=320, height=240, seed=seed)
    if kind is InputKind.DEPTH:
        return media.depth_png_16bit_mm(640, 480, seed=seed)
    if kind is InputKind.THERMAL:
        return media.thermal_jpeg(640, 512, seed=seed)
    if kind is InputKind.IMU:
        return media.imu_csv(media.imu_samples(2000, seed=seed))
    raise ValueError(kind)


@dataclass
class Payloads:
    """Request bodies for item i of one kind: one item per request, as Weaviate sends objects."""

    kind: InputKind
    files: list[bytes] = field(default_factory=list)
    _b64: list[str] = field(default_factory=list)

    @classmethod
    def generate(cls, kind: InputKind, variants: int = MEDIA_VARIANTS) -> Payloads:
        if kind is InputKind.TEXT:
            return cls(kind)
        files = [make_media(kind, seed) for seed in range(variants)]
        return cls(kind, files, [base64.b64encode(f).decode() for f in files])

    def content(self, index: int) -> bytes | str:
        return five_words(index) if self.kind is InputKind.TEXT else self.files[index % len(self.files)]

    def http_body(self, index: int) -> bytes:
        value = five_words(index) if self.kind is InputKind.TEXT else self._b64[index % len(self._b64)]
        return json.dumps({FIELD_OF_KIND[self.kind]: [value]}).encode()

    def grpc_request(self, index: int) -> pb.VectorizeRequest:
        content = self.content(index)
        item = pb.Item(modality=MODALITY_OF_KIND[self.kind], id=str(index),
                       **({"text": content} if isinstance(content, str) else {"data": content}))
        return pb.VectorizeRequest(items=[item], encoding=pb.VECTOR_ENCODING_FLOAT32_LE)

    def describe(self) -> str:
        if self.kind is InputKind.TEXT:
            return f"distinct 5-word texts (e.g. {five_words(12345)!r})"
        sizes = [len(f) for f in self.files]
        return f"{len(self.files)} files of {min(sizes) // 1024}-{max(sizes) // 1024} KiB"


def unique_texts(count: int, offset: int) -> list[str]:
    return [five_words(i) for i in itertools.islice(itertools.count(offset), count)]
