"""The Python API: bytes in, vectors out, in process. No threads, queues or transports here; the
engine builds on the same three steps (preprocess -> forward -> finish) to batch across requests.

    from imagebind_vectorizer import Embedder
    embedder = Embedder(Settings.load(checkpoint="imagebind_huge.pth", modalities="text,vision"))
    vectors = embedder.embed("image", [open("cat.jpg", "rb").read()])   # (1, 1024) numpy array
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from imagebind_vectorizer.errors import ConfigError, InputError
from imagebind_vectorizer.kinds import InputKind
from imagebind_vectorizer.model.checkpoint import load_model, prefetch_pages
from imagebind_vectorizer.model.config import load_config
from imagebind_vectorizer.model.encoder import EncoderForward
from imagebind_vectorizer.model.imagebind import ImageBind, average_clips, random_model
from imagebind_vectorizer.preprocess.dispatch import preprocess
from imagebind_vectorizer.preprocess.profiles import Profile
from imagebind_vectorizer.preprocess.segments import (
    Segment,
    SegmentInput,
    Source,
    SourceLimits,
    WindowSpec,
    iter_segments,
)
from imagebind_vectorizer.preprocess.text import get_tokenizer
from imagebind_vectorizer.runtime.download import read_sidecar, sha256_file, write_sidecar
from imagebind_vectorizer.runtime.info import CheckpointInfo, ModelInfo
from imagebind_vectorizer.runtime.precision import DtypeChoice, resolve_dtype
from imagebind_vectorizer.runtime.weights import CheckpointSource, resolve_checkpoint
from imagebind_vectorizer.settings import OutputScaling, Settings
from imagebind_vectorizer.version import __version__

log = logging.getLogger(__name__)

#: a forward never gets more rows than this, whatever the caller passes to `embed`
DEFAULT_CHUNK = 16


class Embedder:
    def __init__(self, settings: Settings | None = None, *, model: ImageBind | None = None,
                 progress: bool = True) -> None:
        self.settings = settings or Settings.load()
        self.options = self.settings.preprocess_options()
        self.config = load_config(self.settings.model_config)
        self.device = torch.device(self.settings.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.settings.device} requested but CUDA is not available")
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        if model is not None:  # a given model computes in its own dtype
            given = next(model.parameters()).dtype
            self.precision = DtypeChoice(str(given).removeprefix("torch."), "the given model's dtype", {})
        else:
            self.precision = resolve_dtype(self.settings.dtype, self.device)
            if self.precision.warning:
                log.warning(self.precision.warning)
        self.dtype: torch.dtype = self.precision.torch_dtype
        started = time.perf_counter()
        if model is not None:
            self.model = model.to(self.device).eval()
            self.checkpoint = CheckpointInfo(path=None, size=None, sha256=None, random_seed=-1)
        elif self.settings.random_weights:
            self.model = random_model(self.config, self.settings.encoders).to(
                device=self.device, dtype=self.dtype)
            _keep_scales_float32(self.model)
            self.checkpoint = CheckpointInfo(path=None, size=None, sha256=None, random_seed=0)
        else:
            path = resolve_checkpoint(CheckpointSource.of(self.settings), progress=progress)
            self.model = load_model(path, self.config, self.settings.encoders,
                                    dtype=self.dtype, device=self.device)
            # float32 on CPU maps the file: page it in behind the scenes while the server is ready.
            threading.Thread(target=prefetch_pages, args=(self.model,), name="prefetch-weights",
                             daemon=True).start()
            record = read_sidecar(path)
            self.checkpoint = CheckpointInfo(path=str(path), size=path.stat().st_size,
                                             sha256=record.sha256 if record else None)
        if "text" in self.model.encoders:
            self.model.encoders["text"].trim = self.settings.text_trim
            get_tokenizer()  # parse the BPE vocabulary now, not on the first request
        self.load_seconds = time.perf_counter() - started
        self._digest_thread: threading.Thread | None = None

    # The three steps --------------------------------------------------------------------------
    def preprocess(self, kind: InputKind | str, item: bytes | str, *,
                   stop: Callable[[], bool] | None = None) -> torch.Tensor:
        kind = InputKind.parse(kind) if isinstance(kind, str) else kind
        self.require(kind)
        return preprocess(kind, item, self.options, stop=stop)

    @torch.inference_mode()
    def forward(self, kind: InputKind, batch: torch.Tensor) -> torch.Tensor:
        """(rows, ...) model inputs -> (rows, D) float32 per-row embeddings (official scaling)."""
        x = batch.to(self.device, non_blocking=True)
        if x.is_floating_point():
            x = x.to(self.dtype)
        return self.model(kind.encoder, x).float().cpu()

    def start_rows(self, kind: InputKind, batch: torch.Tensor) -> EncoderForward:
        """`forward` as steps the engine can pause between (stem, each trunk block, head); its
        result is on the model's device."""
        x = batch.to(self.device, non_blocking=True)
        if x.is_floating_point():
            x = x.to(self.dtype)
        return self.model.start(kind.encoder, x)

    def forward_rows(self, kind: InputKind, rows: torch.Tensor, chunk: int) -> torch.Tensor:
        """`forward` over any number of rows, at most `chunk` per model call."""
        return torch.cat([self.forward(kind, rows[i:i + chunk]) for i in range(0, rows.shape[0], chunk)])

    def finish(self, per_clip: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """Average each item's clips and apply the output scaling."""
        vectors = average_clips(per_clip, list(counts))
        if self.settings.output_scaling == OutputScaling.UNIT:
            vectors = F.normalize(vectors, dim=-1)
        return vectors

    # Convenience ------------------------------------------------------------------------------
    def embed(self, kind: InputKind | str, items: Sequence[bytes | str], chunk: int = DEFAULT_CHUNK) -> np.ndarray:
        """Embed items of one kind; raises InputError (with the item index) for the first bad one."""
        kind = InputKind.parse(kind) if isinstance(kind, str) else kind
        self.require(kind)
        if not items:
            return np.zeros((0, self.config.out_embed_dim), dtype=np.float32)
        inputs = []
        for index, item in enumerate(items):
            try:
                inputs.append(preprocess(kind, item, self.options))
            except InputError as exc:
                raise exc.at(kind, index) from exc
        counts = [x.shape[0] for x in inputs]
        rows = torch.cat(inputs)
        return self.finish(self.forward_rows(kind, rows, chunk), counts).numpy()

    def embed_segments(self, source: Source, kind: InputKind | str, spec: WindowSpec | None = None, *,
                       limits: SourceLimits | None = None, windows_per_batch: int = 4) -> Iterator[Segment]:
        """A long audio or video file (a path or a seekable binary file) -> its segments, in order,
        as they are computed: `segment.start`/`.end` in seconds, `segment.vectors[InputKind.VIDEO]`
        (what is seen) and `[InputKind.AUDIO]` (what is heard: an audio file, or a video's
        soundtrack when the audio encoder is loaded). Damaged windows carry `errors` instead; a
        file that cannot be segmented, or whose rest is lost, raises InputError (after the good
        segments). Memory stays that of a few windows, whatever the file's length.

            for segment in embedder.embed_segments("lecture.mp4", "video"):
                print(segment.start, segment.end, segment.vectors.keys())
        """
        kind = InputKind.parse(kind) if isinstance(kind, str) else kind
        self.require(kind)
        spec = spec or self.settings.window_spec()
        limits = limits or SourceLimits(self.settings.max_segment_source_seconds,
                                        self.settings.max_segment_source_bytes)
        batch: list[SegmentInput] = []
        for item in iter_segments(source, kind, spec, self.options, limits):
            batch.append(item)
            if len(batch) >= windows_per_batch:
                yield from self._embed_windows(batch)
                batch = []
        yield from self._embed_windows(batch)

    def _embed_windows(self, batch: list[SegmentInput]) -> list[Segment]:
        """Embed several windows at once: one forward per part kind over all their rows."""
        segments = [Segment(item.window, errors=dict(item.errors)) for item in batch]
        for part in (InputKind.VIDEO, InputKind.AUDIO):
            owners = [i for i, item in enumerate(batch) if part in item.rows]
            if not owners or part.encoder not in self.model.enabled:
                continue
            inputs = [batch[i].rows[part] for i in owners]
            vectors = self.finish(self.forward_rows(part, torch.cat(inputs), DEFAULT_CHUNK),
                                  [x.shape[0] for x in inputs]).numpy()
            for i, vector in zip(owners, vectors, strict=True):
                segments[i].vectors[part] = vector
        return segments

    def require(self, kind: InputKind) -> None:
        if kind.encoder not in self.model.enabled:
            raise InputError(f"{kind.value} is not enabled on this server (enabled encoders: "
                             f"{', '.join(self.model.enabled)})", reason="disabled", kind=kind)

    # Metadata ---------------------------------------------------------------------------------
    def ensure_checkpoint_digest(self) -> None:
        """Compute the checkpoint's sha256 in the background when no sidecar records it; then
        `checkpoint` (and so `model_info()`) carries it."""
        info = self.checkpoint
        if info.sha256 or not info.path or self._digest_thread is not None:
            return
        path = Path(info.path)

        def work() -> None:
            record = sha256_file(path)
            write_sidecar(path, record)
            self.checkpoint = dataclasses.replace(info, sha256=record.sha256)
            log.info("checkpoint sha256 %s", record.sha256)

        self._digest_thread = threading.Thread(target=work, name="checkpoint-sha256", daemon=True)
        self._digest_thread.start()

    def model_info(self) -> ModelInfo:
        s = self.settings
        return ModelInfo(
            name=f"imagebind-{self.config.name}",
            server_version=__version__,
            architecture=self.config.name,
            architecture_config=self.config.to_json(),
            dimensions=self.config.out_embed_dim,
            checkpoint=self.checkpoint,
            encoders=tuple(self.model.enabled),
            input_kinds=s.enabled_kinds,
            device=str(self.device),
            dtype=self.precision.dtype,
            dtype_reason=self.precision.reason,
            preprocessing=Profile(s.preprocessing),
            output_scaling=OutputScaling(s.output_scaling),
            logit_scales={name: round(float(enc.scale_value()), 6) for name, enc in self.model.encoders.items()},
        )


def _keep_scales_float32(model: ImageBind) -> None:
    for module in model.modules():
        if hasattr(module, "log_logit_scale"):
            module.log_logit_scale.data = module.log_logit_scale.data.float()
