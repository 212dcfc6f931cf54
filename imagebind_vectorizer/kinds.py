"""The seven input kinds and every fact about each of them, in one table.

What users send is an input kind; what the model has is an encoder (images and videos share the
vision encoder). Each kind's facts (its encoder, its names on every wire we speak or write, its
zero-shot prompt, how many forward passes one item costs) live in `KINDS` below, and every module
that needs one reads it from here: transports, the engine's admission, the Weaviate side. The input
geometry that preprocessing produces and the model consumes is fixed by the official code and
lives here too, so that neither package reaches into the other.

This module imports nothing heavy: settings, the CLI and the Weaviate side read it without torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

# Input geometry fixed by the official code (not constructor arguments) ------------------------------
#: images, depth and thermal maps and video frames are cropped to IMAGE_SIZE x IMAGE_SIZE
IMAGE_SIZE = 224
#: texts are BPE-tokenized to this many tokens (start and end-of-text included)
TEXT_CONTEXT_LENGTH = 77
#: an IMU input is IMU_CHANNELS x IMU_SAMPLES (gyroscope xyz, accelerometer xyz; 2000 samples)
IMU_CHANNELS = 6
IMU_SAMPLES = 2000
#: an audio file is embedded as the mean of AUDIO_CLIPS 2-second clips
AUDIO_CLIPS = 3
#: a video as the mean of VIDEO_CLIPS 2-second clips, each seen through VIDEO_CROPS spatial crops
VIDEO_CLIPS = 5
VIDEO_CROPS = 3


class InputKind(StrEnum):
    """The seven kinds of input. Images and videos share the vision encoder."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DEPTH = "depth"
    THERMAL = "thermal"
    IMU = "imu"

    @property
    def facts(self) -> KindFacts:
        return KINDS[self]

    @property
    def encoder(self) -> str:
        """Name of the model encoder (the official modality key) that embeds this kind."""
        return KINDS[self].encoder

    @classmethod
    def parse(cls, name: str) -> InputKind:
        """A kind from its name, its HTTP request key ("texts", "images") or "vision"."""
        key = name.strip().lower()
        if key == "vision":
            return cls.IMAGE
        for kind, facts in KINDS.items():
            if key in (kind.value, facts.request_key):
                return kind
        valid = ", ".join(k.value for k in cls)
        raise ValueError(f"unknown input kind {name!r}; expected one of {valid}")


@dataclass(frozen=True)
class KindFacts:
    """Everything the code base knows about one input kind, each fact written once."""

    #: the model encoder that embeds it (the official modality key)
    encoder: str
    #: forward passes (rows) one item costs, known before decoding so admission can count them
    rows_per_item: int
    #: key of its list in Weaviate's multi2vec-bind `POST /vectorize` request ...
    request_key: str
    #: ... and of its vectors in the response
    response_key: str
    #: its member of the gRPC enum `imagebind.vectorizer.v1.Modality`
    grpc_modality: str
    #: the multi2vec-bind module-config key listing a vector's properties of this kind
    module_fields_key: str
    #: the Weaviate search operator that vectorizes a query of this kind
    near_operator: str
    #: zero-shot classification prompt (`{label}` is replaced), after the ImageBind paper
    zero_shot_template: str


#: The table. Its order is InputKind's; WEAVIATE_KIND_ORDER below is the order Weaviate uses.
KINDS: Mapping[InputKind, KindFacts] = MappingProxyType({
    InputKind.TEXT: KindFacts(
        encoder="text", rows_per_item=1, request_key="texts", response_key="textVectors",
        grpc_modality="MODALITY_TEXT", module_fields_key="textFields", near_operator="nearText",
        zero_shot_template="{label}"),
    InputKind.IMAGE: KindFacts(
        encoder="vision", rows_per_item=1, request_key="images", response_key="imageVectors",
        grpc_modality="MODALITY_IMAGE", module_fields_key="imageFields", near_operator="nearImage",
        zero_shot_template="a photo of {label}."),
    InputKind.AUDIO: KindFacts(
        encoder="audio", rows_per_item=AUDIO_CLIPS, request_key="audio", response_key="audioVectors",
        grpc_modality="MODALITY_AUDIO", module_fields_key="audioFields", near_operator="nearAudio",
        zero_shot_template="the sound of {label}."),
    InputKind.VIDEO: KindFacts(
        encoder="vision", rows_per_item=VIDEO_CLIPS * VIDEO_CROPS, request_key="video", response_key="videoVectors",
        grpc_modality="MODALITY_VIDEO", module_fields_key="videoFields", near_operator="nearVideo",
        zero_shot_template="a video of {label}."),
    InputKind.DEPTH: KindFacts(
        encoder="depth", rows_per_item=1, request_key="depth", response_key="depthVectors",
        grpc_modality="MODALITY_DEPTH", module_fields_key="depthFields", near_operator="nearDepth",
        zero_shot_template="a depth map of {label}."),
    InputKind.THERMAL: KindFacts(
        encoder="thermal", rows_per_item=1, request_key="thermal", response_key="thermalVectors",
        grpc_modality="MODALITY_THERMAL", module_fields_key="thermalFields", near_operator="nearThermal",
        zero_shot_template="a thermal image of {label}."),
    # "imuFields", not "IMUFields": Weaviate reads the module config case-sensitively, and the
    # Python client's factory writes the spelling it ignores (see weaviate/collections.py).
    InputKind.IMU: KindFacts(
        encoder="imu", rows_per_item=1, request_key="imu", response_key="imuVectors",
        grpc_modality="MODALITY_IMU", module_fields_key="imuFields", near_operator="nearIMU",
        zero_shot_template="{label}."),
})

#: The order in which Weaviate's multi2vec-bind client declares the request fields, groups an
#: object's properties and concatenates weights (Weaviate v1.39 modules/multi2vec-bind).
WEAVIATE_KIND_ORDER: tuple[InputKind, ...] = (InputKind.TEXT, InputKind.IMAGE, InputKind.AUDIO, InputKind.VIDEO,
                                              InputKind.IMU, InputKind.THERMAL, InputKind.DEPTH)

#: The six encoders of ImageBind, in the official order.
ENCODERS: tuple[str, ...] = ("vision", "text", "audio", "depth", "thermal", "imu")


def parse_encoders(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Parse `--modalities` ("text,vision,audio", "all", or kinds such as "image") into encoder names."""
    items = [s for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names: set[str] = set()
    for raw in items:
        item = raw.strip().lower()
        if not item:
            continue
        if item == "all":
            names.update(ENCODERS)
        elif item in ENCODERS:
            names.add(item)
        else:
            names.add(InputKind.parse(item).encoder)
    if not names:
        raise ValueError("no modalities enabled")
    return tuple(e for e in ENCODERS if e in names)
