"""One settings object for the CLI, the environment and the Python API.

Precedence: defaults < environment variables < command-line flags < keyword arguments. Every field
declares its environment variable and flag here, so the three surfaces cannot drift apart, and
`settings_table()` renders the README's tables from the same declarations. `Settings` configures the
model, preprocessing and server; `ConnectionSettings` how the Weaviate-side commands reach Weaviate
and our server. This module is a leaf: it loads no torch and no model code, so reading settings
(and `--help`) stays fast; turning them into a running model is the runtime's work."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from imagebind_vectorizer.errors import ConfigError
from imagebind_vectorizer.kinds import InputKind, parse_encoders
from imagebind_vectorizer.moments import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SECONDS,
    MAX_WINDOW_SECONDS,
    MIN_WINDOW_SECONDS,
    WindowSpec,
)
from imagebind_vectorizer.preprocess.profiles import (
    IMU_DEFAULT_CHANNELS,
    DepthOptions,
    Limits,
    PreprocessOptions,
    Profile,
)

OFFICIAL_CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
#: The ports. Ours default to ones that Weaviate's own defaults (REST 8080, gRPC 50051) leave free, so
#: both run side by side on one host with no flags; the Dockerfiles, the compose file and the Helm chart
#: use the same numbers (tests/test_ports.py holds them all to these).
SERVER_HTTP_PORT = 8011
SERVER_GRPC_PORT = 50061
WEAVIATE_HTTP_PORT = 8080
WEAVIATE_GRPC_PORT = 50051
#: compute dtypes, by their torch names (the runtime resolves them: getattr(torch, name))
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")


class OutputScaling(StrEnum):
    """What the server returns: unit-length vectors (what cosine search wants), or the official
    model's outputs, each encoder's embedding times its fixed or learned scale."""

    UNIT = "unit"
    OFFICIAL = "official"


_WINDOW = WindowSpec()
_LIMITS = Limits()
_DEPTH = DepthOptions()


def cache_home(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME, else ~/.cache: under it live the checkpoint cache (unless `cache_dir` says
    otherwise) and the local Weaviate build."""
    base = (os.environ if env is None else env).get("XDG_CACHE_HOME")
    return Path(base) if base else Path.home() / ".cache"


def _opt(default: Any, env: str, help: str, group: str, *, choices: Sequence[str] | None = None,
         flag: str | None = None, secret: bool = False) -> Any:
    # secret: left out of repr(), so a logged Settings never shows it
    return field(default=default, repr=not secret, metadata={"env": env, "help": help, "group": group,
                                                             "choices": choices, "flag": flag})


def _check_choices(settings: Any) -> list[str]:
    problems = []
    for f in dataclasses.fields(settings):
        choices = f.metadata.get("choices")
        if choices and getattr(settings, f.name) not in choices:
            problems.append(f"{f.name}={getattr(settings, f.name)!r}: expected one of {', '.join(choices)}")
    return problems


@dataclass(frozen=True)
class Settings:
    # Model ------------------------------------------------------------------------------------
    checkpoint: str | None = _opt(None, "IMAGEBIND_CHECKPOINT", "local checkpoint file; never downloaded",
                                  "model")
    checkpoint_url: str = _opt(OFFICIAL_CHECKPOINT_URL, "IMAGEBIND_CHECKPOINT_URL",
                               "where to download the checkpoint when no local file is given", "model")
    checkpoint_sha256: str | None = _opt(None, "IMAGEBIND_CHECKPOINT_SHA256",
                                         "expected sha256 of the downloaded checkpoint", "model")
    cache_dir: str | None = _opt(None, "IMAGEBIND_CACHE",
                                 "download cache (default ~/.cache/imagebind-vectorizer)", "model")
    model_config: str = _opt("huge", "IMAGEBIND_MODEL_CONFIG",
                             "architecture: a preset (huge) or a JSON file of official ImageBindModel arguments",
                             "model")
    modalities: str = _opt("all", "IMAGEBIND_MODALITIES",
                           "encoders to load, e.g. text,vision,audio (image/video use vision)", "model")
    device: str = _opt("cpu", "IMAGEBIND_DEVICE", "cpu, cuda or cuda:N", "model")
    dtype: str = _opt("auto", "IMAGEBIND_DTYPE",
                      "compute dtype; auto measures at start-up what this CPU/GPU runs fastest (bfloat16 only "
                      "where it is clearly faster than float32) and reports the choice and why in the log and /meta",
                      "model", choices=("auto", *DTYPES))
    preprocessing: str = _opt("official", "IMAGEBIND_PREPROCESSING",
                              "official, or weaviate-legacy to reproduce Weaviate's old container",
                              "model", choices=tuple(p.value for p in Profile))
    output_scaling: str = _opt("unit", "IMAGEBIND_OUTPUT_SCALING",
                               "unit-length vectors, or the official model's scaled outputs", "model",
                               choices=tuple(s.value for s in OutputScaling))
    random_weights: bool = _opt(False, "IMAGEBIND_RANDOM_WEIGHTS",
                                "random weights instead of a checkpoint (benchmarks and tests only)", "model")
    torch_threads: int = _opt(0, "IMAGEBIND_TORCH_THREADS", "intra-op threads for torch (0: torch's default)",
                              "model")
    # Preprocessing ----------------------------------------------------------------------------
    exif_transpose: bool = _opt(False, "IMAGEBIND_EXIF_TRANSPOSE",
                                "rotate images by their EXIF tag (the official loader does not)", "preprocessing")
    imu_channels: str = _opt(",".join(IMU_DEFAULT_CHANNELS), "IMAGEBIND_IMU_CHANNELS",
                             "IMU channel order fed to the model (CSV columns are matched by these names)",
                             "preprocessing")
    depth_units_per_meter: float = _opt(_DEPTH.units_per_meter, "IMAGEBIND_DEPTH_UNITS_PER_METER",
                                        "16-bit depth PNG units per metre", "preprocessing")
    depth_baseline_m: float = _opt(_DEPTH.baseline_m, "IMAGEBIND_DEPTH_BASELINE_M",
                                   "stereo baseline for depth -> disparity", "preprocessing")
    depth_focal_px: float = _opt(_DEPTH.focal_px, "IMAGEBIND_DEPTH_FOCAL_PX",
                                 "focal length (pixels) for depth -> disparity", "preprocessing")
    max_item_bytes: int = _opt(_LIMITS.max_item_bytes, "IMAGEBIND_MAX_ITEM_BYTES",
                               "largest decoded input item", "limits")
    max_text_chars: int = _opt(_LIMITS.max_text_chars, "IMAGEBIND_MAX_TEXT_CHARS", "longest text", "limits")
    max_text_word_bytes: int = _opt(_LIMITS.max_text_word_bytes, "IMAGEBIND_MAX_TEXT_WORD_BYTES",
                                    "longest word (UTF-8 bytes) tokenized; BPE time grows with its square "
                                    "(400 too_complex)", "limits")
    max_text_bpe_work: int = _opt(_LIMITS.max_text_bpe_work, "IMAGEBIND_MAX_TEXT_BPE_WORK",
                                  "BPE merge steps one text may take for its 77 tokens (400 too_complex)",
                                  "limits")
    max_image_pixels: int = _opt(_LIMITS.max_image_pixels, "IMAGEBIND_MAX_IMAGE_PIXELS",
                                 "largest image (width x height); stops decompression bombs", "limits")
    max_image_aspect_ratio: float = _opt(_LIMITS.max_image_aspect_ratio, "IMAGEBIND_MAX_IMAGE_ASPECT_RATIO",
                                         "most elongated image accepted", "limits")
    max_audio_seconds: float = _opt(_LIMITS.max_audio_seconds, "IMAGEBIND_MAX_AUDIO_SECONDS",
                                    "longest audio", "limits")
    max_video_seconds: float = _opt(_LIMITS.max_video_seconds, "IMAGEBIND_MAX_VIDEO_SECONDS",
                                    "longest video", "limits")
    max_video_frame_pixels: int = _opt(_LIMITS.max_video_frame_pixels, "IMAGEBIND_MAX_VIDEO_FRAME_PIXELS",
                                       "largest video frame (width x height)", "limits")
    max_imu_samples: int = _opt(_LIMITS.max_imu_samples, "IMAGEBIND_MAX_IMU_SAMPLES",
                                "most IMU samples per input (the model uses the first 2000)", "limits")
    decode_cpu_s: float = _opt(60.0, "IMAGEBIND_DECODE_CPU_S",
                               "CPU seconds one media item may take to decode; beyond, its decoder process is "
                               "stopped and the item fails (400 too_complex)", "limits")
    decode_wall_s: float = _opt(120.0, "IMAGEBIND_DECODE_WALL_S",
                                "wall-clock seconds one media item may take to decode (400 too_slow)", "limits")
    decode_memory_mb: int = _opt(2048, "IMAGEBIND_DECODE_MEMORY_MB",
                                 "memory (MiB) a media decoder process may use for one item beyond its baseline "
                                 "(400 too_large)", "limits")
    # Segments (moment search) -----------------------------------------------------------------
    segment_seconds: float = _opt(_WINDOW.seconds, "IMAGEBIND_SEGMENT_SECONDS",
                                  f"window length when a long file is segmented ({MIN_WINDOW_SECONDS:g} to "
                                  f"{MAX_WINDOW_SECONDS:g} s)", "segments")
    segment_overlap_seconds: float = _opt(_WINDOW.overlap, "IMAGEBIND_SEGMENT_OVERLAP_SECONDS",
                                          "seconds neighbouring windows share (at most half a window)", "segments")
    max_segment_source_seconds: float = _opt(DEFAULT_MAX_SECONDS, "IMAGEBIND_MAX_SEGMENT_SOURCE_SECONDS",
                                             "longest file that may be segmented", "segments")
    max_segment_source_bytes: int = _opt(DEFAULT_MAX_BYTES, "IMAGEBIND_MAX_SEGMENT_SOURCE_BYTES",
                                         "largest file that may be segmented (spooled to a temporary file)",
                                         "segments")
    max_segment_streams: int = _opt(2, "IMAGEBIND_MAX_SEGMENT_STREAMS",
                                    "files segmented at once (each decoded in its own worker process); beyond, "
                                    "RESOURCE_EXHAUSTED", "segments")
    segment_spool_dir: str | None = _opt(None, "IMAGEBIND_SEGMENT_SPOOL_DIR",
                                         "folder uploads are spooled to while they are segmented (default: the "
                                         "system's temporary folder); give it room for max_segment_streams x "
                                         "max_segment_source_bytes. Spooled files are unlinked from the start: "
                                         "nothing is left behind, even by a crash", "segments")
    # Server and engine ------------------------------------------------------------------------
    host: str = _opt("127.0.0.1", "IMAGEBIND_HOST", "address to listen on (0.0.0.0 in the images)", "server")
    port: int = _opt(SERVER_HTTP_PORT, "IMAGEBIND_PORT", "HTTP port (Weaviate's multi2vec-bind contract, /metrics)",
                     "server")
    grpc_port: int = _opt(SERVER_GRPC_PORT, "IMAGEBIND_GRPC_PORT", "gRPC port (0 disables gRPC)", "server")
    max_request_bytes: int = _opt(256 * 1024 * 1024, "IMAGEBIND_MAX_REQUEST_BYTES",
                                  "largest HTTP body or gRPC message", "server")
    max_inflight_bytes: int = _opt(1024 * 1024 * 1024, "IMAGEBIND_MAX_INFLIGHT_BYTES",
                                   "HTTP request body bytes received and not yet answered, all requests together "
                                   "(counted as they arrive, not as a Content-Length claims); beyond, 429",
                                   "server")
    max_request_items: int = _opt(1024, "IMAGEBIND_MAX_REQUEST_ITEMS",
                                  "items in one request, all kinds together (a gRPC stream counts per message); "
                                  "beyond, 400 / INVALID_ARGUMENT before any item is decoded", "server")
    max_connections: int = _opt(1024, "IMAGEBIND_MAX_CONNECTIONS",
                                "open connections per transport; at the limit the longest-idle HTTP connection "
                                "is closed for a new one (503 when none is idle); lowered to fit the open-file "
                                "limit", "server")
    idle_timeout_s: float = _opt(120.0, "IMAGEBIND_IDLE_TIMEOUT_S",
                                 "close a keep-alive connection idle this long (gRPC: without calls), and reset one "
                                 "whose client takes none of its answer for this long; longer than the 90 s after "
                                 "which Weaviate's Go client drops its own idle connections",
                                 "server")
    header_timeout_s: float = _opt(10.0, "IMAGEBIND_HEADER_TIMEOUT_S",
                                   "time from a request's first byte to the end of its headers (HTTP: 408, then "
                                   "the connection is closed) and for a gRPC connection's handshake", "server")
    body_timeout_s: float = _opt(30.0, "IMAGEBIND_BODY_TIMEOUT_S",
                                 "time to receive a whole HTTP request body once its headers are in; beyond, 408",
                                 "server")
    stream_idle_timeout_s: float = _opt(60.0, "IMAGEBIND_STREAM_IDLE_TIMEOUT_S",
                                        "end a gRPC client stream (VectorizeStream, a VectorizeSegments upload) that "
                                        "sends no message for this long while no answer of its own is pending: "
                                        "DEADLINE_EXCEEDED, and its window or segment slot is freed", "server")
    max_batch_size: int = _opt(32, "IMAGEBIND_MAX_BATCH_SIZE",
                               "most forward passes in one batch (a video is 15); below it, batches grow only as "
                               "far as the measured throughput gain pays", "engine")
    max_wait_ms: float = _opt(5.0, "IMAGEBIND_MAX_WAIT_MS",
                              "longest wait for a batch to fill with items still being preprocessed (only where "
                              "batching pays; a lone item never waits)", "engine")
    queue_budget_s: float = _opt(40.0, "IMAGEBIND_QUEUE_BUDGET_S",
                                 "admit an item only while its expected completion (the work ranked before it plus "
                                 "its own forward passes, at the engine's measured speed) fits in this many "
                                 "seconds; beyond, 429 / RESOURCE_EXHAUSTED at once. Default: Weaviate's 50 s "
                                 "client timeout less 10 s for transfer and decoding", "engine")
    queue_size: int = _opt(256, "IMAGEBIND_QUEUE_SIZE",
                           "most forward passes (an audio file is 3, a video 15) held per input kind, a bound on "
                           "memory; beyond, 429 / RESOURCE_EXHAUSTED", "engine")
    warmup: bool = _opt(True, "IMAGEBIND_WARMUP",
                        "before reporting ready, page the weights in, start the media decoders and time one "
                        "forward per input kind (the first request is then as fast as later ones, and "
                        "admission knows the model's speed)",
                        "engine")
    workers: int = _opt(0, "IMAGEBIND_WORKERS",
                        "media decoder processes, and text tokenizer threads (0: one per CPU core)", "engine")
    text_trim: bool = _opt(True, "IMAGEBIND_TEXT_TRIM",
                           "cut text batches at their last end-of-text token (exact; disable only to measure it)",
                           "engine")
    cache_size: int = _opt(10_000, "IMAGEBIND_CACHE_SIZE", "vectors kept in the LRU cache (0 disables it)",
                           "engine")
    cache_kinds: str = _opt("text", "IMAGEBIND_CACHE_KINDS", "input kinds whose vectors are cached", "engine")
    shutdown_grace_s: float = _opt(30.0, "IMAGEBIND_SHUTDOWN_GRACE_S",
                                   "on SIGTERM, how long admitted work may finish; then it is abandoned "
                                   "(503 / UNAVAILABLE) and the process exits", "server")
    log_level: str = _opt("info", "IMAGEBIND_LOG_LEVEL", "log level", "server",
                          choices=("debug", "info", "warning", "error"))
    log_format: str = _opt("json", "IMAGEBIND_LOG_FORMAT", "structured JSON lines or plain text", "server",
                           choices=("json", "text"))
    # Security ---------------------------------------------------------------------------------------
    api_keys: str | None = _opt(None, "IMAGEBIND_API_KEYS",
                                "API keys callers must present, comma-separated (HTTP Basic password, Bearer, gRPC "
                                "Bearer); prefer the env var or a key file: a command line is visible to local users",
                                "security", secret=True)
    api_key_file: str | None = _opt(None, "IMAGEBIND_API_KEY_FILE",
                                    "file of API keys, one per line, re-read when it changes (a mounted Secret)",
                                    "security")
    metrics_api_keys: str | None = _opt(None, "IMAGEBIND_METRICS_API_KEYS",
                                        "keys for /metrics only (a scraper's key cannot vectorize); "
                                        "without them /metrics takes the API keys", "security", secret=True)
    metrics_api_key_file: str | None = _opt(None, "IMAGEBIND_METRICS_API_KEY_FILE",
                                            "file of /metrics keys, one per line, re-read when it changes", "security")
    metrics_open: bool = _opt(False, "IMAGEBIND_METRICS_OPEN", "serve /metrics without a key even when keys are set",
                              "security")
    auth_probes: bool = _opt(False, "IMAGEBIND_AUTH_PROBES",
                             "require a key on /.well-known/live, /.well-known/ready and gRPC health too "
                             "(kubelet and Weaviate's start-up poll then need one)", "security")
    grpc_reflection: str = _opt("auto", "IMAGEBIND_GRPC_REFLECTION",
                                "gRPC server reflection: auto is on without API keys and off with them; "
                                "on with keys requires a key", "security", choices=("auto", "on", "off"))
    tls_cert_file: str | None = _opt(None, "IMAGEBIND_TLS_CERT_FILE",
                                     "PEM certificate (chain) for HTTPS and gRPC TLS; reloaded when it changes",
                                     "security")
    tls_key_file: str | None = _opt(None, "IMAGEBIND_TLS_KEY_FILE", "PEM private key of the certificate",
                                    "security")
    tls_client_ca_file: str | None = _opt(None, "IMAGEBIND_TLS_CLIENT_CA_FILE",
                                          "PEM CA bundle: clients must present a certificate it signed (mTLS)",
                                          "security")
    tls_client_auth: str = _opt("both", "IMAGEBIND_TLS_CLIENT_AUTH",
                                "transports that verify client certificates when a client CA is set; stock "
                                "Weaviate sends none, so use grpc when Weaviate calls the HTTP port",
                                "security", choices=("both", "grpc", "http"))

    def __post_init__(self) -> None:
        problems = _check_choices(self)
        try:
            parse_encoders(self.modalities)
        except ValueError as exc:
            problems.append(f"modalities: {exc}")
        for name in ("max_batch_size", "queue_size", "max_request_items", "max_connections"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.max_wait_ms < 0 or self.cache_size < 0 or self.workers < 0 or self.shutdown_grace_s < 0:
            problems.append("max_wait_ms, cache_size, workers and shutdown_grace_s must not be negative")
        if not self.queue_budget_s > 0:
            problems.append("queue_budget_s must be > 0")
        try:
            self.window_spec()
        except ValueError as exc:
            problems.append(f"segments: {exc}")
        if self.max_segment_streams < 1 or self.max_segment_source_seconds <= 0 or self.max_segment_source_bytes < 1:
            problems.append("max_segment_streams, max_segment_source_seconds and max_segment_source_bytes must be "
                            "positive")
        for name in ("idle_timeout_s", "header_timeout_s", "body_timeout_s", "stream_idle_timeout_s"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            problems.append("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            problems.append("tls_client_ca_file needs tls_cert_file and tls_key_file (mTLS runs over TLS)")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            problems.append(f"device {self.device!r}: expected cpu, cuda or cuda:N")
        if problems:
            raise ConfigError("invalid settings: " + "; ".join(problems))

    # Derived views ----------------------------------------------------------------------------
    @property
    def encoders(self) -> tuple[str, ...]:
        return parse_encoders(self.modalities)

    @property
    def enabled_kinds(self) -> tuple[InputKind, ...]:
        return tuple(kind for kind in InputKind if kind.encoder in self.encoders)

    @property
    def cached_kinds(self) -> frozenset[InputKind]:
        if self.cache_size == 0:
            return frozenset()
        return frozenset(InputKind.parse(k) for k in self.cache_kinds.split(",") if k.strip())

    def preprocess_options(self) -> PreprocessOptions:
        return PreprocessOptions(
            profile=Profile(self.preprocessing),
            limits=Limits(
                max_item_bytes=self.max_item_bytes, max_text_chars=self.max_text_chars,
                max_text_word_bytes=self.max_text_word_bytes, max_text_bpe_work=self.max_text_bpe_work,
                max_image_pixels=self.max_image_pixels, max_image_aspect_ratio=self.max_image_aspect_ratio,
                max_audio_seconds=self.max_audio_seconds, max_video_seconds=self.max_video_seconds,
                max_video_frame_pixels=self.max_video_frame_pixels, max_imu_samples=self.max_imu_samples,
            ),
            depth=DepthOptions(units_per_meter=self.depth_units_per_meter, baseline_m=self.depth_baseline_m,
                               focal_px=self.depth_focal_px),
            exif_transpose=self.exif_transpose,
            imu_channels=tuple(c.strip() for c in self.imu_channels.split(",") if c.strip()),
        )

    def window_spec(self) -> WindowSpec:
        return WindowSpec(self.segment_seconds, self.segment_overlap_seconds)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    # Loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None,
             **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values = _from_env(cls, env)
        values.update(_legacy_container_env(env, values))
        return cls(**values | _from_args(cls, args) | overrides)


@dataclass(frozen=True)
class ConnectionSettings:
    """How the Weaviate-side commands (collection, ingest, search, classify) reach Weaviate and our
    vectorizer server. The defaults are both servers' own defaults on this host: Weaviate's REST and
    gRPC ports, and `serve`'s HTTP port (Weaviate's `BIND_INFERENCE_API=http://127.0.0.1:8011`)."""

    weaviate_url: str = _opt(f"http://127.0.0.1:{WEAVIATE_HTTP_PORT}", "WEAVIATE_URL",
                             "Weaviate REST URL (Weaviate's own default)", "connection")
    weaviate_grpc_port: int = _opt(WEAVIATE_GRPC_PORT, "WEAVIATE_GRPC_PORT",
                                   "Weaviate gRPC port (Weaviate's own default)", "connection")
    weaviate_api_key: str | None = _opt(None, "WEAVIATE_API_KEY", "Weaviate API key (none: anonymous access)",
                                        "connection")
    server: str = _opt(f"http://127.0.0.1:{SERVER_HTTP_PORT}", "IMAGEBIND_SERVER_URL",
                       "our vectorizer server, used to embed composed queries and classification inputs; it must "
                       "serve the same model as the one Weaviate uses", "connection")
    server_grpc: str = _opt("", "IMAGEBIND_SERVER_GRPC",
                            f"our server's gRPC address (HOST:PORT) for segmenting long files (ingest --segments); "
                            f"default: the --server host, port {SERVER_GRPC_PORT}", "connection")
    server_api_key: str | None = _opt(None, "IMAGEBIND_SERVER_API_KEY",
                                      "API key for our server when it requires one (prefer the environment "
                                      "variable: a command line is visible to other local users)", "connection",
                                      secret=True)
    server_ca_file: str | None = _opt(None, "IMAGEBIND_SERVER_CA_FILE",
                                      "CA certificate (PEM) that signed an https --server's certificate "
                                      "(default: the system's CAs)", "connection")
    timeout: float = _opt(600.0, "IMAGEBIND_CLIENT_TIMEOUT_S",
                          "seconds a query, an insert batch or a call to our server may take", "connection")

    def server_grpc_address(self) -> str:
        if self.server_grpc:
            return self.server_grpc
        # the URL's host only: never a user:KEY@ part (Weaviate-style credentials) or its port
        host = urlsplit(self.server if "://" in self.server else "http://" + self.server).hostname or "127.0.0.1"
        return f"[{host}]:{SERVER_GRPC_PORT}" if ":" in host else f"{host}:{SERVER_GRPC_PORT}"

    @classmethod
    def load(cls, args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None,
             **overrides: Any) -> ConnectionSettings:
        return cls(**_from_env(cls, os.environ if env is None else env) | _from_args(cls, args) | overrides)


AnySettings = TypeVar("AnySettings", Settings, ConnectionSettings)


def _from_env(cls: type[AnySettings], env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        raw = env.get(f.metadata["env"])
        if raw is not None and raw != "":
            values[f.name] = _convert(f, raw)
    return values


def _from_args(cls: type[AnySettings], args: argparse.Namespace | None) -> dict[str, Any]:
    if args is None:
        return {}
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def _field_type(f: dataclasses.Field) -> type:
    default = f.default
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    return str


def _convert(f: dataclasses.Field, raw: str) -> Any:
    kind = _field_type(f)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}") from None


def _legacy_container_env(env: Mapping[str, str], values: dict[str, Any]) -> dict[str, Any]:
    """Weaviate's container read ENABLE_CUDA ("true"/"1") and CUDA_CORE ("cuda:0"); honour them so
    this server is a drop-in replacement. IMAGEBIND_DEVICE wins when both are set."""
    if "device" in values:
        return {}
    if env.get("ENABLE_CUDA", "").strip().lower() in ("true", "1"):
        return {"device": env.get("CUDA_CORE", "").strip() or "cuda:0"}
    return {}


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, groups: Sequence[str] = (), *,
                  settings: type[AnySettings] = Settings, names: Sequence[str] = (),
                  aliases: Mapping[str, Sequence[str]] | None = None,
                  helps: Mapping[str, str] | None = None) -> None:
    """Add a flag for every setting in `groups`, and for the settings `names`; unset flags stay None
    so environment values survive (`settings.load(args)` merges them). `aliases` adds other
    spellings of a flag; `helps` replaces a help text where a command gives the setting a narrower
    meaning."""
    chosen = [f for f in dataclasses.fields(settings) if f.metadata["group"] in groups or f.name in names]
    argument_groups: dict[str, argparse._ArgumentGroup] = {}
    for f in chosen:
        group = argument_groups.get(f.metadata["group"])
        if group is None:
            group = argument_groups[f.metadata["group"]] = parser.add_argument_group(f.metadata["group"])
        help_text = (helps or {}).get(f.name) or \
            f"{f.metadata['help']} [env {f.metadata['env']}, default {f.default!r}]"
        spellings = [_flag(f), *(aliases or {}).get(f.name, ())]
        kind = _field_type(f)
        if kind is bool:
            group.add_argument(*spellings, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        else:
            group.add_argument(*spellings, dest=f.name, type=kind, default=None,
                               choices=f.metadata.get("choices"), help=help_text)


def settings_table(settings: type[AnySettings] = Settings) -> str:
    """A README settings table (Markdown), generated from the declarations above."""
    rows = ["| flag | environment variable | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(settings):
        default = "" if f.default is None else f"`{f.default}`"
        rows.append(f"| `{_flag(f)}` | `{f.metadata['env']}` | {default} | {f.metadata['help']} |")
    return "\n".join(rows)


