from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODALITY_UNSPECIFIED: _ClassVar[Modality]
    MODALITY_TEXT: _ClassVar[Modality]
    MODALITY_IMAGE: _ClassVar[Modality]
    MODALITY_AUDIO: _ClassVar[Modality]
    MODALITY_VIDEO: _ClassVar[Modality]
    MODALITY_DEPTH: _ClassVar[Modality]
    MODALITY_THERMAL: _ClassVar[Modality]
    MODALITY_IMU: _ClassVar[Modality]

class VectorEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VECTOR_ENCODING_UNSPECIFIED: _ClassVar[VectorEncoding]
    VECTOR_ENCODING_FLOATS: _ClassVar[VectorEncoding]
    VECTOR_ENCODING_FLOAT32_LE: _ClassVar[VectorEncoding]
MODALITY_UNSPECIFIED: Modality
MODALITY_TEXT: Modality
MODALITY_IMAGE: Modality
MODALITY_AUDIO: Modality
MODALITY_VIDEO: Modality
MODALITY_DEPTH: Modality
MODALITY_THERMAL: Modality
MODALITY_IMU: Modality
VECTOR_ENCODING_UNSPECIFIED: VectorEncoding
VECTOR_ENCODING_FLOATS: VectorEncoding
VECTOR_ENCODING_FLOAT32_LE: VectorEncoding

class Item(_message.Message):
    __slots__ = ("modality", "text", "data", "id")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    text: str
    data: bytes
    id: str
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., text: _Optional[str] = ..., data: _Optional[bytes] = ..., id: _Optional[str] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("id", "modality", "values", "float32_le")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_LE_FIELD_NUMBER: _ClassVar[int]
    id: str
    modality: Modality
    values: _containers.RepeatedScalarFieldContainer[float]
    float32_le: bytes
    def __init__(self, id: _Optional[str] = ..., modality: _Optional[_Union[Modality, str]] = ..., values: _Optional[_Iterable[float]] = ..., float32_le: _Optional[bytes] = ...) -> None: ...

class VectorizeRequest(_message.Message):
    __slots__ = ("items", "encoding")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    encoding: VectorEncoding
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., encoding: _Optional[_Union[VectorEncoding, str]] = ...) -> None: ...

class VectorizeResponse(_message.Message):
    __slots__ = ("embeddings", "dimensions")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    dimensions: int
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., dimensions: _Optional[int] = ...) -> None: ...

class VectorizeStreamRequest(_message.Message):
    __slots__ = ("sequence", "item", "encoding")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    item: Item
    encoding: VectorEncoding
    def __init__(self, sequence: _Optional[int] = ..., item: _Optional[_Union[Item, _Mapping]] = ..., encoding: _Optional[_Union[VectorEncoding, str]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "reason")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class VectorizeStreamResponse(_message.Message):
    __slots__ = ("sequence", "id", "embedding", "error")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    id: str
    embedding: Embedding
    error: ItemError
    def __init__(self, sequence: _Optional[int] = ..., id: _Optional[str] = ..., embedding: _Optional[_Union[Embedding, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class SegmentOptions(_message.Message):
    __slots__ = ("modality", "window_seconds", "overlap_seconds", "total_bytes", "first_index", "encoding", "id")
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    modality: Modality
    window_seconds: float
    overlap_seconds: float
    total_bytes: int
    first_index: int
    encoding: VectorEncoding
    id: str
    def __init__(self, modality: _Optional[_Union[Modality, str]] = ..., window_seconds: _Optional[float] = ..., overlap_seconds: _Optional[float] = ..., total_bytes: _Optional[int] = ..., first_index: _Optional[int] = ..., encoding: _Optional[_Union[VectorEncoding, str]] = ..., id: _Optional[str] = ...) -> None: ...

class VectorizeSegmentsRequest(_message.Message):
    __slots__ = ("options", "chunk")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    options: SegmentOptions
    chunk: bytes
    def __init__(self, options: _Optional[_Union[SegmentOptions, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("id", "index", "start_seconds", "end_seconds", "visual", "audio", "visual_error", "audio_error")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VISUAL_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VISUAL_ERROR_FIELD_NUMBER: _ClassVar[int]
    AUDIO_ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    index: int
    start_seconds: float
    end_seconds: float
    visual: Embedding
    audio: Embedding
    visual_error: ItemError
    audio_error: ItemError
    def __init__(self, id: _Optional[str] = ..., index: _Optional[int] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., visual: _Optional[_Union[Embedding, _Mapping]] = ..., audio: _Optional[_Union[Embedding, _Mapping]] = ..., visual_error: _Optional[_Union[ItemError, _Mapping]] = ..., audio_error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class SegmentsDone(_message.Message):
    __slots__ = ("segments", "seconds", "bytes")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    segments: int
    seconds: float
    bytes: int
    def __init__(self, segments: _Optional[int] = ..., seconds: _Optional[float] = ..., bytes: _Optional[int] = ...) -> None: ...

class VectorizeSegmentsResponse(_message.Message):
    __slots__ = ("segment", "done")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    done: SegmentsDone
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ..., done: _Optional[_Union[SegmentsDone, _Mapping]] = ...) -> None: ...

class MetaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("path", "size_bytes", "sha256", "weights", "name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    size_bytes: int
    sha256: str
    weights: str
    name: str
    def __init__(self, path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., weights: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class MetaResponse(_message.Message):
    __slots__ = ("model", "name", "server", "server_version", "state", "architecture", "architecture_config_json", "dimensions", "checkpoint", "encoders", "modalities", "device", "dtype", "preprocessing", "output_scaling", "max_message_bytes", "stream_max_in_flight", "error", "segment_seconds", "segment_overlap_seconds", "max_segment_source_bytes", "max_segment_source_seconds", "max_segment_streams", "dtype_reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    ENCODERS_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SCALING_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STREAM_MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_OVERLAP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEGMENT_SOURCE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SEGMENT_SOURCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEGMENT_STREAMS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    name: str
    server: str
    server_version: str
    state: str
    architecture: str
    architecture_config_json: str
    dimensions: int
    checkpoint: Checkpoint
    encoders: _containers.RepeatedScalarFieldContainer[str]
    modalities: _containers.RepeatedScalarFieldContainer[Modality]
    device: str
    dtype: str
    preprocessing: str
    output_scaling: str
    max_message_bytes: int
    stream_max_in_flight: int
    error: str
    segment_seconds: float
    segment_overlap_seconds: float
    max_segment_source_bytes: int
    max_segment_source_seconds: float
    max_segment_streams: int
    dtype_reason: str
    def __init__(self, model: _Optional[str] = ..., name: _Optional[str] = ..., server: _Optional[str] = ..., server_version: _Optional[str] = ..., state: _Optional[str] = ..., architecture: _Optional[str] = ..., architecture_config_json: _Optional[str] = ..., dimensions: _Optional[int] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., encoders: _Optional[_Iterable[str]] = ..., modalities: _Optional[_Iterable[_Union[Modality, str]]] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., preprocessing: _Optional[str] = ..., output_scaling: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., stream_max_in_flight: _Optional[int] = ..., error: _Optional[str] = ..., segment_seconds: _Optional[float] = ..., segment_overlap_seconds: _Optional[float] = ..., max_segment_source_bytes: _Optional[int] = ..., max_segment_source_seconds: _Optional[float] = ..., max_segment_streams: _Optional[int] = ..., dtype_reason: _Optional[str] = ...) -> None: ...
