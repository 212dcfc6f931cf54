"""Helpers shared by the model and preprocessing tests: comparisons that report how far apart two
results are, the reference (official) model run on tensors, and oracles composed from library calls
for the behaviour of Weaviate's container where the official code has no loader."""

from __future__ import annotations

import io
import struct
import zlib
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

#: largest difference seen per comparison label, printed at the end of the session
#: (see `pytest_terminal_summary` in conftest.py) so a run documents how close parity is
MEASURED: dict[str, dict[str, float]] = defaultdict(lambda: {"max_abs": 0.0, "count": 0})

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def max_abs(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = as_tensor(a).double(), as_tensor(b).double()
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return float((a - b).abs().max()) if a.numel() else 0.0


def min_cosine(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = as_tensor(a).double(), as_tensor(b).double()
    return float(F.cosine_similarity(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1), dim=-1).min())


def record(label: str, diff: float, cos: float | None = None, *, rel: float | None = None,
           norm_dev: float | None = None) -> None:
    entry = MEASURED[label]
    entry["max_abs"] = max(entry["max_abs"], diff)
    if cos is not None:
        entry["min_cos"] = min(entry.get("min_cos", cos), cos)
    if rel is not None:
        entry["max_rel"] = max(entry.get("max_rel", rel), rel)
    if norm_dev is not None:
        entry["max_norm_dev"] = max(entry.get("max_norm_dev", norm_dev), norm_dev)
    entry["count"] += 1


def assert_tensors_match(ours: torch.Tensor, reference: torch.Tensor, *, label: str, atol: float = 0.0,
                         what: str = "") -> float:
    """Element-wise comparison with the measured difference in the failure message."""
    diff = max_abs(ours, reference)
    record(label, diff)
    assert diff <= atol, f"{label} {what}: max abs diff {diff:.3g} exceeds {atol:g}"
    return diff


def vector_differences(ours: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray
                       ) -> tuple[float, float, float]:
    """(min cosine, largest element difference relative to its row's reference norm, largest
    |norm ratio - 1|) over the rows of two (N, D) batches of embeddings."""
    ours_t, ref_t = as_tensor(ours).double(), as_tensor(reference).double()
    assert ours_t.shape == ref_t.shape, f"shapes differ: {tuple(ours_t.shape)} vs {tuple(ref_t.shape)}"
    ours_t, ref_t = ours_t.reshape(ours_t.shape[0], -1), ref_t.reshape(ref_t.shape[0], -1)
    ref_norm = ref_t.norm(dim=-1)
    rel = float(((ours_t - ref_t).abs().amax(dim=-1) / ref_norm).max())
    norm_dev = float((ours_t.norm(dim=-1) / ref_norm - 1).abs().max())
    return min_cosine(ours_t, ref_t), rel, norm_dev


def assert_vectors_match(ours: torch.Tensor | np.ndarray, reference: torch.Tensor | np.ndarray, *, label: str,
                         rtol: float, min_cos: float = 0.99999, what: str = "") -> None:
    """Embeddings agree in direction (cosine) and element by element: every element within `rtol`
    times its row's reference norm (the norm carries the modality scale), and every row's norm
    within `rtol` of the reference's. A cosine alone can miss a wrong input when the model maps
    different inputs to similar directions; the element bound is the one that decides."""
    cos, rel, norm_dev = vector_differences(ours, reference)
    record(label, max_abs(ours, reference), cos, rel=rel, norm_dev=norm_dev)
    message = (f"{label} {what}: min cosine {cos:.8f}, max abs diff {rel:.3g} of the norm, "
               f"norm ratio off by {norm_dev:.3g} (tolerance {rtol:g})")
    assert cos >= min_cos, message
    assert rel <= rtol, message
    assert norm_dev <= rtol, message


#: Reduced precision against float32 on the discriminative tiny test model: dtype -> (min cosine,
#: element difference per vector norm). Measured on CPU (torch's emulated bf16/fp16, no AMX), worst
#: over the random model inputs of tests/model/test_model_parity.py and one media item per kind
#: through the Embedder: bfloat16 cosine 0.99938 (audio; text 0.99979, image 0.99991, video 0.99998),
#: element 0.0139; float16 cosine 0.999985, element 0.0025. Bounds: about 3x the measured 1 - cosine
#: and 2-4x the element difference. README's bf16 fidelity (text 0.99986 ... video 0.99997) was
#: measured on the `huge` architecture; this tiny model is tuned to separate inputs, and the same
#: gain amplifies rounding (unit gains gave bf16 >= 0.99977 but no spread for IMU; query/key gain 3
#: gave 0.997), so it cannot be held to huge's numbers. Norms stay exact (float32 scaling): the
#: norm ratio is held to 1e-5, which bf16 scales (20 -> 20.125) would break.
REDUCED_PRECISION: dict[torch.dtype, tuple[float, float]] = {
    torch.bfloat16: (0.998, 0.03),
    torch.float16: (0.99995, 0.01),
}
REDUCED_NORM_RTOL = 1e-5


def assert_reduced_precision_close(low: torch.Tensor | np.ndarray, full: torch.Tensor | np.ndarray, *,
                                   dtype: torch.dtype, label: str, what: str = "") -> None:
    """`low` (computed in `dtype`) against the float32 result, at the bounds above."""
    min_cos, rtol = REDUCED_PRECISION[dtype]
    cos, rel, norm_dev = vector_differences(low, full)
    record(label, max_abs(low, full), cos, rel=rel, norm_dev=norm_dev)
    message = (f"{label} {what}: min cosine {cos:.7f}, element difference {rel:.3g} of the norm, "
               f"norm ratio off by {norm_dev:.3g}")
    assert cos >= min_cos and rel <= rtol, message + f" (bounds: cosine {min_cos}, element {rtol})"
    assert norm_dev <= REDUCED_NORM_RTOL, message + " (the output scale must stay float32)"


@torch.no_grad()
def reference_embed(ref_model: torch.nn.Module, modality: str, x: torch.Tensor) -> torch.Tensor:
    return ref_model({modality: x})[modality]


_ISOLATED: ProcessPoolExecutor | None = None


def isolated(function: Callable[..., object], *args: object, timeout: float = 120) -> object:
    """`function(*args)` in a process of its own (a forkserver child with the decoders imported, as
    the server's decoder workers are), so that a crash there fails the calling test instead of
    ending the whole session."""
    global _ISOLATED
    if _ISOLATED is None:
        from imagebind_vectorizer.engine.decode_pool import decoder_context

        _ISOLATED = ProcessPoolExecutor(1, mp_context=decoder_context())  # type: ignore[arg-type]
    try:
        return _ISOLATED.submit(function, *args).result(timeout)
    except BrokenProcessPool:
        _ISOLATED = None
        raise AssertionError(f"{getattr(function, '__name__', function)} crashed its process") from None


def peak_rss_after(runs: list[tuple[str, Path, str]], *, timeout: float = 110) -> list[float]:
    """Run `preprocess(kind, file, profile)` for each (kind, path, profile) in order in a fresh Python
    process and return its peak RSS (MiB, `ru_maxrss`, a high-water mark) before the first run and
    after each. Put a small warm-up file first so one-time allocations are not charged to a file."""
    import json
    import subprocess
    import sys

    script = (
        "import json, resource, sys\n"
        "from imagebind_vectorizer.kinds import InputKind\n"
        "from imagebind_vectorizer.preprocess import PreprocessOptions, Profile, preprocess\n"
        "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "peaks = [peak()]\n"
        "for kind, path, profile in json.loads(sys.argv[1]):\n"
        "    preprocess(InputKind(kind), open(path, 'rb').read(), PreprocessOptions(profile=Profile(profile)))\n"
        "    peaks.append(peak())\n"
        "print(json.dumps(peaks))\n"
    )
    args = json.dumps([[kind, str(path), profile] for kind, path, profile in runs])
    done = subprocess.run([sys.executable, "-c", script, args], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def write_files(folder: Path, files: dict[str, bytes | str]) -> Path:
    """Write `files` (relative name -> bytes or text) under `folder`, creating subfolders."""
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return folder


# Oracles for behaviour the official code has no loader for ---------------------------------------
def container_gray_oracle(data: bytes) -> torch.Tensor:
    """Weaviate's container for depth and thermal: Pillow "L", then torchvision's CLIP-style
    transform with one-channel mean/std -> (1, 224, 224)."""
    from torchvision import transforms as T

    image = Image.open(io.BytesIO(data))
    if image.mode != "L":
        image = image.convert("L")
    transform = T.Compose([
        T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(224),
        T.ToTensor(),
        T.Normalize(mean=CLIP_MEAN[0], std=CLIP_STD[0]),
    ])
    return transform(image)


def container_imu_oracle(csv_bytes: bytes) -> torch.Tensor:
    """Weaviate's container for IMU: loadtxt after one header row, *reshape* (N, 6) -> (6, N), then
    zero-pad or cut to 2000 samples -> (6, 2000)."""
    table = np.loadtxt(io.BytesIO(csv_bytes), skiprows=1, delimiter=",", dtype=np.float32)
    table = table.reshape(table.shape[1], table.shape[0])
    out = np.zeros((6, 2000), dtype=np.float32)
    n = min(table.shape[1], 2000)
    out[:, :n] = table[:, :n]
    return torch.from_numpy(out)


def legacy_text_tokens(ref: SimpleNamespace, text: str) -> torch.Tensor:
    """The pre-2025-11-21 official tokenizer (and the container): EOT appended *before* cutting to
    77, composed from the reference tokenizer's BPE."""
    tokenizer = ref.data.SimpleTokenizer(bpe_path=ref.data.return_bpe_path())
    sot, eot = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
    ids = [sot, *tokenizer.encode(text), eot][:77]
    out = torch.zeros(77, dtype=torch.long)
    out[: len(ids)] = torch.tensor(ids)
    return out


def legacy_video_oracle(ref: SimpleNamespace, path: Path) -> torch.Tensor:
    """What Weaviate's container computes for a video (its own loader, not the official one):
    pytorchvideo 0.1.5's EncodedVideo with the default PyAV decoder, 0.1.5's clip spacing
    (max_start / clips), 2 frames per clip, /255, ShortSideScale(224), CLIP normalisation,
    three spatial crops -> (15, 3, 2, 224, 224)."""
    from pytorchvideo import transforms as pv_transforms  # type: ignore[import-not-found]

    video = ref.encoded_video.EncodedVideo.from_path(str(path), decode_audio=False)
    sampler = ref.clip_sampling.ConstantClipsPerVideoSampler(clip_duration=2, clips_per_video=5)
    subsample = pv_transforms.UniformTemporalSubsample(num_samples=2)
    scale = pv_transforms.ShortSideScale(224)
    normalize = ref.data.NormalizeVideo(mean=CLIP_MEAN, std=CLIP_STD)
    clips = []
    for start, end in ref.data.get_clip_timepoints(sampler, video.duration):
        clip = video.get_clip(start, end)
        assert clip["video"] is not None, f"the legacy oracle found no frames in [{start}, {end})"
        clips.append(normalize(scale(subsample(clip["video"]) / 255.0)))
    return torch.stack(ref.data.SpatialCrop(224, num_crops=3)(clips))


# Crafted files ------------------------------------------------------------------------------------
def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny, structurally valid PNG whose header claims width x height RGB pixels: a decoder that
    trusted it would allocate width * height * 3 bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def checkout_env(dest: Path, checkout: Path | None = None) -> str:
    """What `make` gives a checkout (scripts/checkout_env.py): a small environment at `dest` over the
    shared one this test run uses (found through weaviate-client, one of its packages), whose bin/
    holds the checkout's `imagebind-vectorizer`. Returns the script's output."""
    import subprocess
    import sys

    import weaviate

    root = Path(__file__).resolve().parents[1]
    shared = Path(weaviate.__file__).resolve().parents[4]  # <venv>/lib/pythonX.Y/site-packages/weaviate
    return subprocess.run([sys.executable, str(root / "scripts" / "checkout_env.py"), str(shared),
                           "--checkout", str(checkout or root), "--dest", str(dest)],
                          capture_output=True, text=True, timeout=120, check=True).stdout
