"""The benchmark: our server, batched, against the reference container's way of serving (no
batching, full-length text, one request at a time), per input kind, transport, concurrency and
dtype; plus the model's achieved FLOP/s against a matmul's, and a start-up mode.

    python -m bench.run --quick                 # a few minutes on 2 CPU cores, huge architecture
    python -m bench.run --device cuda --dtype float32,bfloat16 --concurrency 1,8,16,32
    python -m bench.run --startup --checkpoint imagebind_huge.pth

See bench/README.md for what each number means."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.flops import GFLOPS_PER_ITEM, matmul_gflops, text_gflops, text_tokens
from bench.inputs import Payloads, unique_texts
from bench.load import HttpClient, fetch_vectors, run_level
from bench.report import LEVEL_HEADERS, level_row, plot, table
from bench.server import Access, ServerProcess, metric_samples
from imagebind_vectorizer.kinds import InputKind, parse_encoders
from tests import media

#: the reference container: each request alone (the client's global lock), every item's forward
#: alone, text padded to 77 tokens. --max-batch-size 15 (not 1) lets one item's clips share a
#: forward as the reference does (3 audio clips, 15 video views); with one request in the server
#: at a time no batch ever holds two items.
BASELINE_FLAGS = ("--max-batch-size", "15", "--max-wait-ms", "0", "--no-text-trim")
QUICK = {"kinds": "text,image", "concurrency": "1,4", "rounds": 2, "dtypes": "float32,bfloat16", "probes": 3}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", dest="dtypes", default=None,
                        help="comma-separated compute dtypes (default float32,bfloat16)")
    parser.add_argument("--model-config", default="huge", help="architecture preset or JSON file (default huge)")
    parser.add_argument("--checkpoint", help="real weights to load; default: --random-weights")
    parser.add_argument("--kinds", default=None, help="input kinds (default text,image,audio,video)")
    parser.add_argument("--concurrency", default=None, help="concurrency levels (default 1,8,16)")
    parser.add_argument("--transports", default="http,grpc", help="http, grpc or both (default)")
    parser.add_argument("--duration-s", type=float, default=20.0, help="seconds per level (default 20)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="instead of a duration, send ROUNDS x concurrency requests per level")
    parser.add_argument("--probes", type=int, default=None,
                        help="inputs per kind whose vectors are compared across dtypes (default 4)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="batched server's --max-batch-size")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batched server's --max-wait-ms")
    parser.add_argument("--matmul-size", type=int, default=None,
                        help="side of the square matmuls timed for the FLOP/s ceiling (default 4096, 8192 on CUDA)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline server")
    parser.add_argument("--baseline-dtypes", default=None,
                        help="dtypes to run the baseline in (default: every --dtype; the reference container "
                             "runs float32, so --baseline-dtypes float32 saves the bf16 baseline's time)")
    parser.add_argument("--startup", action="store_true",
                        help="only measure start-up: time to ready and peak RSS with a checkpoint on disk")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {', '.join(f'{k}={v}' for k, v in QUICK.items())} unless given")
    parser.add_argument("--server-arg", action="append", default=[], metavar="FLAG",
                        help="extra flag for both servers (repeat; e.g. --server-arg=--torch-threads=2)")
    Access.add_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where JSON, PNG and logs go")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"kinds": "text,image,audio,video", "concurrency": "1,8,16",
                                         "dtypes": "float32,bfloat16", "probes": 4}
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.kind_list = [InputKind.parse(k) for k in args.kinds.split(",") if k.strip()]
    args.concurrency_list = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.dtype_list = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    args.transport_list = [t.strip() for t in args.transports.split(",") if t.strip()]
    args.baseline_dtype_list = (args.dtype_list if args.baseline_dtypes is None else
                                [d.strip() for d in args.baseline_dtypes.split(",") if d.strip()])
    if not set(args.transport_list) <= {"http", "grpc"}:
        parser.error("--transports: http and/or grpc")
    args.access = Access.of(parser, args)
    return args


# Environment ----------------------------------------------------------------------------------------
def hardware(device: str) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch": torch.__version__,
                            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    with contextlib.suppress(ValueError, OSError):
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def batch_counts(metrics_text: str) -> dict[str, tuple[float, float]]:
    """(items, model calls) so far, per kind, from the server's imagebind_batch_items histogram."""
    sums = {labels["kind"]: value for labels, value in metric_samples(metrics_text, "imagebind_batch_items_sum")}
    counts = {labels["kind"]: value for labels, value in metric_samples(metrics_text, "imagebind_batch_items_count")}
    return {kind: (sums[kind], counts.get(kind, 0.0)) for kind in sums}


def items_per_call(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]],
                   kind: str) -> float | None:
    items = after.get(kind, (0.0, 0.0))[0] - before.get(kind, (0.0, 0.0))[0]
    calls = after.get(kind, (0.0, 0.0))[1] - before.get(kind, (0.0, 0.0))[1]
    return round(items / calls, 2) if calls else None


def server_flags(args: argparse.Namespace, dtype: str, baseline: bool) -> list[str]:
    encoders = ",".join(parse_encoders([k.value for k in args.kind_list]))
    weights = ["--checkpoint", args.checkpoint] if args.checkpoint else ["--random-weights"]
    queue = max(256, 15 * max(args.concurrency_list) * 2)
    batching = list(BASELINE_FLAGS) if baseline else ["--max-batch-size", str(args.max_batch_size),
                                                      "--max-wait-ms", str(args.max_wait_ms)]
    return ["--model-config", args.model_config, "--device", args.device, "--dtype", dtype, "--modalities", encoders,
            "--cache-size", "0", "--queue-size", str(queue), *weights, *batching, *args.server_arg]


# The load benchmark ---------------------------------------------------------------------------------
def run_load(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    print(f"generating inputs for {', '.join(k.value for k in args.kind_list)} ...", flush=True)
    payloads = {kind: Payloads.generate(kind) for kind in args.kind_list}
    for kind, p in payloads.items():
        print(f"  {kind.value}: {p.describe()}")
    huge = args.model_config == "huge"
    # analytic cost per item; trimmed text batches are cut at their longest text (5 words: ~7 tokens)
    trimmed_tokens = text_tokens(unique_texts(2000, 10_000)) if InputKind.TEXT in payloads else 77
    cost = {(kind.value, config): GFLOPS_PER_ITEM[kind.value] for kind in payloads
            for config in ("batched", "baseline")}
    cost["text", "batched"] = text_gflops(trimmed_tokens)
    record: dict[str, Any] = {"hardware": hardware(args.device), "started": stamp,
                              "settings": {k: v for k, v in vars(args).items()
                                           if k not in ("kind_list", "concurrency_list", "dtype_list",
                                                        "transport_list", "baseline_dtype_list", "out", "api_key",
                                                        "access")},
                              "security": args.access.describe(),
                              "baseline_flags": list(BASELINE_FLAGS), "inputs": {k.value: p.describe()
                                                                                 for k, p in payloads.items()},
                              "text_tokens_trimmed": trimmed_tokens, "matmul_gflops": {}, "servers": [], "levels": [],
                              "cosine_to_float32": {}}
    probes: dict[str, dict[str, np.ndarray]] = {}
    offset = 10_000  # text indices below this are the warm-up and probe texts
    for dtype in args.dtype_list:
        configs = ["batched"] + ([] if args.no_baseline or dtype not in args.baseline_dtype_list else ["baseline"])
        gflops = matmul_gflops(getattr(torch, dtype), args.device, args.matmul_size)
        print(f"\n[{dtype}] matmul: {gflops:.0f} GFLOP/s on {args.device}", flush=True)
        level_rows = len(record["levels"])
        for config in configs:
            log_path = args.out / "logs" / f"{stamp}-{dtype}-{config}.log"
            server = ServerProcess(server_flags(args, dtype, config == "baseline"), log_path, args.access)
            print(f"[{dtype}] starting the {config} server ...", flush=True)
            with server:
                print(f"[{dtype}] {config} server ready in {server.ready_s:.1f} s", flush=True)
                grpc_target = f"127.0.0.1:{server.grpc_port}"
                for p in payloads.values():  # warm-up: first calls allocate and pick kernels
                    for transport in args.transport_list:
                        run_level(http_port=server.http_port, grpc_target=grpc_target, transport=transport,
                                  payloads=p, concurrency=1, requests=1, duration_s=None, serialize=False,
                                  access=args.access)
                for kind, p in payloads.items():
                    for transport in args.transport_list:
                        for concurrency in args.concurrency_list:
                            requests = None if args.rounds is None else args.rounds * concurrency
                            before = batch_counts(server.metrics())
                            result = run_level(http_port=server.http_port, grpc_target=grpc_target,
                                               transport=transport, payloads=p, concurrency=concurrency,
                                               requests=requests, duration_s=None if requests else args.duration_s,
                                               serialize=config == "baseline", offset=offset,
                                               access=args.access)
                            offset += 100_000
                            row = {"dtype": dtype, "config": config, **result.as_dict(),
                                   "items_per_model_call": items_per_call(before, batch_counts(server.metrics()),
                                                                          kind.value)}
                            if huge and result.items_per_s:
                                row["gflops_per_item"] = cost[kind.value, config]
                                row["achieved_gflops"] = result.items_per_s * cost[kind.value, config]
                            record["levels"].append(row)
                            print(table(LEVEL_HEADERS, [level_row(row)]).splitlines()[-1], flush=True)
                            if result.first_error:
                                print(f"    first error: {result.first_error}", flush=True)
                if config == "batched":
                    probes[dtype] = {kind.value: fetch_vectors(server.http_port, p, args.probes, args.access)
                                     for kind, p in payloads.items()}
                record["servers"].append({
                    "dtype": dtype, "config": config, "flags": server.args, "ready_s": round(server.ready_s or 0, 2),
                    "peak_rss_mib": server.peak_rss_mib()})
        # measured again with the servers gone: shared machines drift; the higher is the ceiling
        again = matmul_gflops(getattr(torch, dtype), args.device, args.matmul_size)
        print(f"[{dtype}] matmul again: {again:.0f} GFLOP/s", flush=True)
        record["matmul_gflops"][dtype] = {"before": round(gflops, 1), "after": round(again, 1)}
        ceiling = max(gflops, again)
        for row in record["levels"][level_rows:]:
            if "achieved_gflops" in row:
                row["percent_of_matmul"] = 100 * row["achieved_gflops"] / ceiling
    if "float32" in probes:
        for dtype, vectors in probes.items():
            if dtype == "float32":
                continue
            record["cosine_to_float32"][dtype] = {}
            for kind, v in vectors.items():
                ref = probes["float32"][kind]
                cos = (v * ref).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(ref, axis=1))
                record["cosine_to_float32"][dtype][kind] = {"min": float(cos.min()), "mean": float(cos.mean()),
                                                            "inputs": len(cos)}
    record["ratios"] = ratios(record["levels"])
    return record


def ratios(levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batched divided by baseline, for each (dtype, kind, transport, concurrency) measured in both:
    against the baseline of the same dtype, and against the float32 baseline (what the reference
    container runs), so a bfloat16 row also says what switching dtype buys over the reference."""
    index = {(r["dtype"], r["config"], r["kind"], r["transport"], r["concurrency"]): r for r in levels}
    out = []
    for (dtype, config, kind, transport, concurrency), batched in index.items():
        if config != "batched":
            continue
        for baseline_dtype in dict.fromkeys((dtype, "float32")):
            baseline = index.get((baseline_dtype, "baseline", kind, transport, concurrency))
            if baseline is None or not baseline["items_per_s"]:
                continue
            out.append({"dtype": dtype, "baseline_dtype": baseline_dtype, "kind": kind, "transport": transport,
                        "concurrency": concurrency,
                        "throughput_ratio": batched["items_per_s"] / baseline["items_per_s"],
                        "p50_latency_ratio": batched["p50_ms"] / baseline["p50_ms"]})
    return out


def print_summary(record: dict[str, Any]) -> None:
    hw = record["hardware"]
    print(f"\n== {hw['cpu']}, {hw['cpu_cores']} cores" + (f", {hw['gpu']}" if hw.get("gpu") else "")
          + f", torch {hw['torch']}")
    print("\nmatmul GFLOP/s (before / after the servers): " + ", ".join(
        f"{d} {v['before']:.0f} / {v['after']:.0f}" for d, v in record["matmul_gflops"].items()))
    print("\n" + table(LEVEL_HEADERS, [level_row(r) for r in record["levels"]]))
    if record["ratios"]:
        print("\nbatched / baseline (throughput: higher is better; p50 latency: lower is better)")
        print(table(("dtype", "vs baseline", "kind", "transport", "conc", "throughput x", "p50 latency x"),
                    [[r["dtype"], r["baseline_dtype"], r["kind"], r["transport"], r["concurrency"],
                      r["throughput_ratio"], r["p50_latency_ratio"]] for r in record["ratios"]]))
    print("\nservers")
    print(table(("dtype", "config", "ready s", "peak RSS MiB"),
                [[s["dtype"], s["config"], s["ready_s"], s["peak_rss_mib"]] for s in record["servers"]]))
    for dtype, kinds in record["cosine_to_float32"].items():
        print(f"\ncosine of {dtype} vectors to float32 vectors (same inputs): " + ", ".join(
            f"{kind} min {c['min']:.5f} mean {c['mean']:.5f} (n={c['inputs']})" for kind, c in kinds.items()))


# Start-up -------------------------------------------------------------------------------------------
def random_checkpoint(model_config: str) -> Path:
    """A checkpoint of random weights in the official format, made once and kept in the cache."""
    from imagebind_vectorizer.kinds import ENCODERS
    from imagebind_vectorizer.model.checkpoint import save_official_checkpoint
    from imagebind_vectorizer.model.config import load_config
    from imagebind_vectorizer.model.imagebind import random_model

    config = load_config(model_config)
    path = Path.home() / ".cache" / "imagebind-vectorizer" / "bench" / f"imagebind_{config.name}_random.pth"
    if not path.exists():
        print(f"writing a random-weight {config.name} checkpoint to {path} (once) ...", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        save_official_checkpoint(random_model(config, ENCODERS, seed=0), partial)
        partial.rename(path)
    return path


def run_startup(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    checkpoint = Path(args.checkpoint) if args.checkpoint else random_checkpoint(args.model_config)
    record: dict[str, Any] = {"hardware": hardware(args.device), "started": stamp, "mode": "startup",
                              "checkpoint": str(checkpoint), "checkpoint_bytes": checkpoint.stat().st_size,
                              "startup": []}
    for dtype in args.dtype_list:
        flags = ["--model-config", args.model_config, "--device", args.device, "--dtype", dtype,
                 "--checkpoint", str(checkpoint), *args.server_arg]
        server = ServerProcess(flags, args.out / "logs" / f"{stamp}-startup-{dtype}.log", args.access)
        with server:
            row: dict[str, Any] = {"dtype": dtype, "listening_s": round(server.listening_s or 0, 2),
                                   "ready_s": round(server.ready_s or 0, 2),
                                   "peak_rss_at_ready_mib": server.peak_rss_mib()}
            # weights are memory-mapped: the first forward of each encoder is what pages them in
            client = HttpClient(server.http_port, 3600, args.access)
            began = time.monotonic()
            status, body = client.post(first_vectors_body())
            client.close()
            if status != 200:
                raise RuntimeError(f"first request: HTTP {status}: {body[:300]!r}")
            row["first_request_s"] = round(time.monotonic() - began, 2)
            row["peak_rss_mib"] = server.peak_rss_mib()
        record["startup"].append(row)
        print(f"[{dtype}] HTTP listening after {row['listening_s']} s, ready after {row['ready_s']} s "
              f"(peak RSS {row['peak_rss_at_ready_mib']:.0f} MiB); first request with every encoder took "
              f"{row['first_request_s']} s (peak RSS {row['peak_rss_mib']:.0f} MiB)", flush=True)
    print("\n" + table(("dtype", "listening s", "ready s", "RSS at ready MiB", "first request s", "peak RSS MiB"),
                       [[r["dtype"], r["listening_s"], r["ready_s"], r["peak_rss_at_ready_mib"], r["first_request_s"],
                         r["peak_rss_mib"]] for r in record["startup"]]))
    return record


def first_vectors_body() -> bytes:
    """One small item for each of the six encoders (video shares the image encoder)."""
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return json.dumps({
        "texts": ["a first request"], "images": [b64(media.image_bytes("JPEG", 320, 240))],
        "audio": [b64(media.audio_bytes("wav", seconds=2.0))], "depth": [b64(media.depth_png_8bit(160, 120))],
        "thermal": [b64(media.thermal_jpeg(160, 128))], "imu": [b64(media.imu_csv(media.imu_samples(500)))],
    }).encode()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if args.startup:
        record = run_startup(args, stamp)
        name = f"startup-{stamp}"
    else:
        record = run_load(args, stamp)
        name = f"bench-{stamp}"
        print_summary(record)
        png = args.out / f"{name}.png"
        hw = record["hardware"]
        plot(record["levels"], png, f"imagebind-vectorizer {args.model_config} on {args.device} "
                                    f"({hw.get('gpu') or hw['cpu']}, {hw['cpu_cores']} cores): batched vs baseline")
        print(f"\nplot: {png}")
    record["wall_s"] = round(time.monotonic() - started, 1)
    path = args.out / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"results: {path} ({record['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
