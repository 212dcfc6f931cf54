"""On a CUDA machine: the full `huge` architecture (random weights, seeded) in float16 and bfloat16
against float32, on real preprocessed inputs of every kind, on the GPU. Prints one table; writes
JSON to the path given (default gpu_check.json). Run by scripts/gpu_check.sh."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from imagebind_vectorizer.kinds import ENCODERS, InputKind
from imagebind_vectorizer.model.config import load_config
from imagebind_vectorizer.model.imagebind import average_clips, random_model
from imagebind_vectorizer.preprocess import PreprocessOptions, preprocess
from tests import media


def inputs() -> dict[InputKind, list[torch.Tensor]]:
    options = PreprocessOptions()
    raw: dict[InputKind, list[bytes | str]] = {
        InputKind.TEXT: ["a dog barking in the rain", "an orchestra tuning up", "a red car on a mountain road"],
        InputKind.IMAGE: [media.image_bytes("JPEG", 640, 480, seed=s) for s in range(4)],
        InputKind.AUDIO: [media.audio_bytes("wav", 5.0, freq=220 * (s + 1), seed=s) for s in range(3)],
        InputKind.VIDEO: [media.video_bytes(seconds=4.0, seed=s) for s in range(2)],
        InputKind.DEPTH: [media.depth_png_16bit_mm(seed=s) for s in range(3)],
        InputKind.THERMAL: [media.thermal_jpeg(seed=s) for s in range(3)],
        InputKind.IMU: [media.imu_csv(media.imu_samples(seed=s)) for s in range(3)],
    }
    return {kind: [preprocess(kind, item, options) for item in items] for kind, items in raw.items()}


@torch.inference_mode()
def embed(model, kind: InputKind, items: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    rows = torch.cat(items).cuda()
    rows = rows.to(dtype) if rows.is_floating_point() else rows
    per_clip = model(kind.encoder, rows).float().cpu()
    return torch.nn.functional.normalize(average_clips(per_clip, [x.shape[0] for x in items]), dim=-1)


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu_check.json")
    name = torch.cuda.get_device_name()
    data = inputs()
    model = random_model(load_config("huge"), ENCODERS, seed=0).cuda()
    reference = {kind: embed(model, kind, items, torch.float32) for kind, items in data.items()}
    report: dict[str, object] = {"gpu": name, "torch": torch.__version__, "cosine_to_float32": {}}
    for dtype in (torch.float16, torch.bfloat16):
        converted = random_model(load_config("huge"), ENCODERS, seed=0).to("cuda", dtype)
        for module in converted.modules():  # as the loader does: scales stay float32
            if hasattr(module, "log_logit_scale"):
                module.log_logit_scale.data = module.log_logit_scale.data.float()
        row = {}
        for kind, items in data.items():
            torch.cuda.synchronize()
            started = time.perf_counter()
            got = embed(converted, kind, items, dtype)
            torch.cuda.synchronize()
            cos = (got * reference[kind]).sum(-1)
            row[kind.value] = {"min": float(cos.min()), "mean": float(cos.mean()), "items": len(items),
                               "finite": bool(torch.isfinite(got).all()), "seconds": time.perf_counter() - started}
        report["cosine_to_float32"][str(dtype).removeprefix("torch.")] = row  # type: ignore[index]
        del converted
        torch.cuda.empty_cache()
    out.write_text(json.dumps(report, indent=2))
    print(f"{name}, torch {torch.__version__}: cosine of huge-architecture vectors to float32 (random weights)")
    for dtype, row in report["cosine_to_float32"].items():  # type: ignore[union-attr]
        print(dtype + ": " + ", ".join(f"{k} min {v['min']:.5f}" + ("" if v["finite"] else " NON-FINITE")
                                      for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
