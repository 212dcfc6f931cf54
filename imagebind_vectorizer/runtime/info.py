"""What the runtime reports about the loaded model: one typed, frozen record. Each transport renders
it in its own wire format in one place (HTTP: Weaviate's camelCase `/meta` JSON in
server/weaviate_http.py; gRPC: `MetaResponse` in server/grpc_service.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.preprocess.profiles import Profile
from imagebind_vectorizer.settings import OutputScaling


@dataclass(frozen=True)
class CheckpointInfo:
    """The weights the model was loaded from."""

    path: str | None
    size: int | None
    sha256: str | None  # None until known (computed in the background for unrecorded files)
    random_seed: int | None = None  # set when the weights are random

    @property
    def name(self) -> str | None:
        """The file's name, what clients see: the absolute path stays in the server's own log (a
        path tells a caller about the host's folders, and Weaviate shows /meta to all its users)."""
        return Path(self.path).name if self.path else None

    @property
    def weights(self) -> str:
        return "random" if self.random_seed is not None else "checkpoint"

    @property
    def model_id(self) -> str:
        """Identifies the weights for cache keys without hashing gigabytes at start-up."""
        if self.random_seed is not None:
            return f"random-{self.random_seed}"
        if self.sha256:
            return self.sha256
        stat = Path(self.path).stat() if self.path else None
        basis = f"{self.path}:{stat.st_size}:{stat.st_mtime_ns}" if stat else "unknown"
        return "file-" + hashlib.sha256(basis.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model, as the server describes it to clients (and Weaviate to its users)."""

    #: what Weaviate's multi2vec-bind module and our clients read to recognise this server
    MODEL: ClassVar[str] = "ImageBindModel"
    VERSION: ClassVar[int] = 1
    SERVER: ClassVar[str] = "imagebind-vectorizer"

    name: str  # e.g. "imagebind-huge"
    server_version: str
    architecture: str  # the preset or config file name
    architecture_config: Mapping[str, Any]  # official ImageBindModel arguments
    dimensions: int
    checkpoint: CheckpointInfo
    encoders: tuple[str, ...]  # loaded encoders, in the official order
    input_kinds: tuple[InputKind, ...]  # the kinds those encoders embed
    device: str
    dtype: str  # the compute dtype in use (what `--dtype auto` chose)
    dtype_reason: str  # why: measured speed against float32 on this device, or "set explicitly"
    preprocessing: Profile
    output_scaling: OutputScaling
    #: the official per-encoder output scales (text: the learned logit scale); zero-shot
    #: classification multiplies cosine similarities by the text scale, as the paper does
    logit_scales: Mapping[str, float]
