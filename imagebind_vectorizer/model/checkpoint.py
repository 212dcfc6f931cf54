"""Loading the official `imagebind_huge.pth` state dict (or any checkpoint in its format).

The model is built on the `meta` device (no random initialisation that the checkpoint then
overwrites) and the memory-mapped tensors are assigned straight into it: a float32 CPU
deployment holds exactly one copy of the weights, paged in from the file as used."""

from __future__ import annotations

import ctypes
import logging
import mmap
import pickle
import re
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from imagebind_vectorizer.errors import CheckpointError, first_line
from imagebind_vectorizer.kinds import ENCODERS
from imagebind_vectorizer.model.config import ImageBindConfig
from imagebind_vectorizer.model.imagebind import ImageBind

log = logging.getLogger(__name__)

_MODALITY_OF_KEY = re.compile(r"^modality_(?:preprocessors|trunks|heads|postprocessors)\.([a-z]+)\.")
# Kept in float32 whatever the compute dtype: bf16 would round exp(log 20) to 20.125.
_KEEP_FLOAT32 = ("log_logit_scale",)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The checkpoint's tensors, memory-mapped; never unpickles arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    try:
        state = _load_weights_only(path, mmap=True)
    except _NotMmappable:
        # Pre-1.6 (non-zip) files cannot be memory-mapped; load them whole, still weights-only.
        log.warning("%s is in the legacy format; loading without memory mapping", path)
        state = _load_weights_only(path, mmap=False)
    if isinstance(state, dict) and len(state) == 1 and isinstance(next(iter(state.values())), dict):
        state = next(iter(state.values()))  # {"model": state_dict} wrappers
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


class _NotMmappable(Exception):
    pass


def _load_weights_only(path: Path, *, mmap: bool) -> object:
    """torch.load with weights_only; every failure becomes a CheckpointError that says what the file
    is not (a random file fails inside the unpickler with KeyError, EOFError, ...)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph of advice to load unsafely; keep only what was refused.
        detail = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line.upper()
                       and "weights_only" not in line), "refused by the weights-only unpickler")
        raise CheckpointError(f"{path} is not a plain checkpoint of tensors: it holds pickled Python objects "
                              f"that weights-only loading refuses to run ({detail})") from exc
    except RuntimeError as exc:
        if mmap and "mmap" in str(exc):
            raise _NotMmappable from exc
        raise CheckpointError(f"{path} is not a loadable PyTorch checkpoint: {first_line(exc)}") from exc
    except Exception as exc:
        raise CheckpointError(f"{path} is not a loadable PyTorch checkpoint "
                              f"({type(exc).__name__}: {first_line(exc)})") from exc


def build_model_from_state_dict(state: dict[str, Tensor], config: ImageBindConfig,
                                encoders: tuple[str, ...], *, dtype: torch.dtype = torch.float32,
                                device: str | torch.device = "cpu") -> ImageBind:
    with torch.device("meta"):
        model = ImageBind(config, encoders)
    mapping = model.official_key_map()
    wanted = {official: own for own, official in mapping.items()}
    present_for_enabled = set()
    unexpected = []
    for key in state:
        match = _MODALITY_OF_KEY.match(key)
        if match is None or match.group(1) not in ENCODERS:
            unexpected.append(key)
        elif match.group(1) in encoders:
            present_for_enabled.add(key)
    unexpected += sorted(present_for_enabled - wanted.keys())
    missing = sorted(wanted.keys() - present_for_enabled)
    if missing or unexpected:
        raise CheckpointError(_key_report(missing, unexpected))

    expected_shapes = {k: v.shape for k, v in model.state_dict(keep_vars=True).items()}
    mismatched = [f"{official}: checkpoint {tuple(state[official].shape)}, model {tuple(expected_shapes[own])}"
                  for official, own in wanted.items() if state[official].shape != expected_shapes[own]]
    if mismatched:
        raise CheckpointError("checkpoint shapes do not match the architecture (does --model-config "
                              f"match the checkpoint?): {_clip_list(mismatched)}")

    target = torch.device(device)
    # float32 on CPU assigns the memory-mapped tensors as they are (zero copies). Any conversion
    # copies each tensor once; the mapped source pages are then dropped so that peak memory stays
    # near the converted weights' size instead of holding both.
    converting = dtype != torch.float32 or target.type != "cpu"
    tensors: dict[str, Tensor] = {}
    for official, own in wanted.items():
        source = state[official]
        if converting:  # fault the source in with one call rather than page by page
            _madvise(source, _MADV_POPULATE_READ)
        keep_fp32 = own.endswith(_KEEP_FLOAT32) or not source.is_floating_point()
        tensor = source.to(device=target, dtype=torch.float32 if keep_fp32 and source.is_floating_point()
                           else None if keep_fp32 else dtype)
        if converting and tensor.data_ptr() == source.data_ptr():
            tensor = tensor.clone()  # nothing may keep the mapping alive
        if converting:
            release_pages(source)
        tensors[own] = tensor
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.eval().requires_grad_(False)


_MADV_WILLNEED = 3
_MADV_DONTNEED = 4
_MADV_POPULATE_READ = 22  # Linux >= 5.14: fault the pages in now; older kernels return EINVAL
_libc = None


def _madvise(tensor: Tensor, advice: int) -> bool:
    """Linux madvise over a CPU tensor's memory (page-aligned); best effort, never raises."""
    global _libc
    if not sys.platform.startswith("linux") or tensor.device.type != "cpu" or tensor.numel() == 0:
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        page = mmap.PAGESIZE
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        aligned = start - start % page
        return _libc.madvise(ctypes.c_void_p(aligned), ctypes.c_size_t(end - aligned), advice) == 0
    except (OSError, AttributeError):  # only memory use or warm-up time depends on it
        return False


def release_pages(tensor: Tensor) -> None:
    """Drop a memory-mapped tensor's pages from this process. The mapping is private and
    unmodified, so this only frees memory; a later read would reload from the file."""
    _madvise(tensor, _MADV_DONTNEED)


def prefetch_pages(model: torch.nn.Module) -> None:
    """Fault a memory-mapped model's weights in, so the first request after start-up does not pay
    for gigabytes of page faults. Blocking (madvise releases the GIL): run it in a thread."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if not _madvise(tensor, _MADV_POPULATE_READ):
            _madvise(tensor, _MADV_WILLNEED)


def load_model(path: Path, config: ImageBindConfig, encoders: tuple[str, ...] = ENCODERS, *,
               dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> ImageBind:
    started = time.perf_counter()
    model = build_model_from_state_dict(read_state_dict(path), config, encoders, dtype=dtype, device=device)
    log.info("loaded %s (%s) in %.2f s", path, ",".join(encoders), time.perf_counter() - started)
    return model


def save_official_checkpoint(model: ImageBind, path: Path) -> None:
    """Write `model` in the official checkpoint format (key names of `imagebind_huge.pth`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in model.official_state_dict().items()}, path)


def _clip_list(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


def _key_report(missing: list[str], unexpected: list[str]) -> str:
    parts = ["checkpoint keys do not match the ImageBind architecture"]
    if missing:
        parts.append(f"missing {len(missing)} key(s): {_clip_list(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {_clip_list(unexpected)}")
    return "; ".join(parts)
