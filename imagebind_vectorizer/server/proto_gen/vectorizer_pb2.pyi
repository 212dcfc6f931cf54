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

class MetaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("path", "size_bytes", "sha256", "weights")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    path: str
    size_bytes: int
    sha256: str
    weights: str
    def __init__(self, path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., weights: _Optional[str] = ...) -> None: ...

class MetaResponse(_message.Message):
    __slots__ = ("model", "name", "server", "server_version", "state", "architecture", "architecture_config_json", "dimensions", "checkpoint", "encoders", "modalities", "device", "dtype", "preprocessing", "output_scaling", "max_message_bytes", "stream_max_in_flight", "error")
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
    def __init__(self, model: _Optional[str] = ..., name: _Optional[str] = ..., server: _Optional[str] = ..., server_version: _Optional[str] = ..., state: _Optional[str] = ..., architecture: _Optional[str] = ..., architecture_config_json: _Optional[str] = ..., dimensions: _Optional[int] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., encoders: _Optional[_Iterable[str]] = ..., modalities: _Optional[_Iterable[_Union[Modality, str]]] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., preprocessing: _Optional[str] = ..., output_scaling: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., stream_max_in_flight: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...
