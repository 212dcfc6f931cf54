"""Which compute dtype this device runs fastest, measured rather than assumed.

bfloat16 halves memory traffic and is several times faster than float32 where the hardware has
it (AMX or AVX512-BF16 on recent Xeons, tensor cores on GPUs), but on CPUs without it PyTorch
emulates it, and a model in bfloat16 runs several times *slower* than in float32 (measured on a
2-core AVX2-only AMD EPYC: 0.2-0.3x). CPU flags alone do not settle it (a hypervisor may hide
them, a library may not use them), so `--dtype auto` times one linear layer the size of the
model's in each candidate dtype and keeps float32 unless another is clearly faster. An explicit
dtype is kept, with a warning when the same measurement says it is slow here."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from imagebind_vectorizer.settings import DTYPES

#: the torch dtype of each name the `dtype` setting accepts
TORCH_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPES}
#: a reduced precision must beat float32 by this factor to be chosen (it costs some fidelity)
MIN_SPEEDUP = 1.25
#: an explicit dtype slower than this share of float32's speed gets a warning
SLOW_SHARE = 0.8
#: timing rounds, alternating the dtypes; each dtype keeps its best round (other processes on a
#: shared machine only ever slow a round down)
ROUNDS = 3
#: CPU flags that mean native bfloat16 matrix instructions (reported with the choice)
BF16_FLAGS = ("amx_bf16", "avx512_bf16")

#: (device, dtype) -> GFLOP/s of a model-sized linear layer
Probe = Callable[[torch.device, torch.dtype], float]


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str
    reason: str  # one sentence for logs and /meta
    speed: dict[str, float]  # measured throughput relative to float32, per candidate dtype
    warning: str | None = None  # set when an explicit dtype is slow here

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]


def linear_gflops(device: torch.device, dtype: torch.dtype, *, tokens: int = 256, width: int = 1024,
                  min_seconds: float = 0.05) -> float:
    """GFLOP/s of `F.linear` on (tokens, width) x (width, width), as a transformer block runs it.
    Small enough that even an emulated slow path takes well under a second."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, width, generator=generator).to(device=device, dtype=dtype)
    w = torch.randn(width, width, generator=generator).to(device=device, dtype=dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.inference_mode():
        F.linear(x, w)  # the first call picks kernels and allocates
        sync()
        calls, started = 0, time.perf_counter()
        while True:
            F.linear(x, w)
            calls += 1
            sync()
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds and calls >= 2:
                break
    return 2 * tokens * width * width * calls / elapsed / 1e9


def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def candidates(device: torch.device) -> list[str]:
    """Reduced precisions worth timing on this device."""
    if device.type == "cuda":
        return ["bfloat16", "float16"] if torch.cuda.is_bf16_supported() else ["float16"]
    return ["bfloat16"]  # float16 on CPUs is slow nearly everywhere and loses range


def choose_dtype(requested: str, device: torch.device, *, probe: Probe = linear_gflops,
                 flags: frozenset[str] | None = None) -> DtypeChoice:
    """`requested` is "auto" or a dtype name. Auto: the fastest measured dtype (float32 unless
    another is `MIN_SPEEDUP` times faster). Explicit: kept, with a warning when it is slow."""
    where = _describe(device, cpu_flags() if flags is None else flags)
    names = candidates(device) if requested == "auto" else [] if requested == "float32" else [requested]
    best = {name: 0.0 for name in ["float32", *names]}
    for _ in range(ROUNDS if names else 0):
        for name in best:
            best[name] = max(best[name], probe(device, TORCH_DTYPES[name]))
    speed = {name: rate / best["float32"] if best["float32"] > 0 else 0.0 for name, rate in best.items()}
    speed["float32"] = 1.0
    if requested != "auto":
        share = speed.get(requested, 1.0)
        warning = None
        if share < SLOW_SHARE:
            warning = (f"--dtype {requested} runs a model-sized matmul at {share:.2f}x the speed of float32 on "
                       f"{where}: this server will be about {1 / max(share, 1e-3):.1f}x slower than with "
                       "--dtype float32 (or auto)")
        measured = f" ({share:.2f}x float32's matmul speed on {where})" if requested != "float32" else ""
        return DtypeChoice(requested, f"{requested}: set explicitly{measured}", speed, warning)
    fastest = max(speed, key=lambda name: speed[name])
    if fastest != "float32" and speed[fastest] >= MIN_SPEEDUP:
        return DtypeChoice(fastest, f"{fastest}: a model-sized matmul runs {speed[fastest]:.1f}x faster than in "
                                    f"float32 on {where}", speed)
    others = ", ".join(f"{name} {speed[name]:.2f}x" for name in names)
    return DtypeChoice("float32", f"float32: reduced precision is not faster on {where} ({others} float32's "
                                  "matmul speed)", speed)


_MEASURED: dict[tuple[str, str], DtypeChoice] = {}


def resolve_dtype(requested: str, device: torch.device) -> DtypeChoice:
    """`choose_dtype` with the real probe, measured once per process, device and request (every
    Embedder of a process then agrees, and tests do not pay for it each time)."""
    key = (requested, str(device))
    if key not in _MEASURED:
        _MEASURED[key] = choose_dtype(requested, device)
    return _MEASURED[key]


def _describe(device: torch.device, flags: frozenset[str]) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}" if torch.cuda.is_available() else str(device)
    native = [flag for flag in BF16_FLAGS if flag in flags]
    return "this CPU (" + (", ".join(native) if native else "no AMX or AVX512-BF16") + ")"
