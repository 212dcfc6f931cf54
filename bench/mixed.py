"""Search while importing: does a text query stay fast while heavy media is being embedded?

    python -m bench.mixed                                   # huge, CPU float32: an hour or more on 2 cores
    python -m bench.mixed --model-config tiny.json --duration-s 5 --configs scheduled,reference   # harness check

Weaviate sends one object per request, many at once, and a user's nearText query arrives alone
in the middle of an import. For each server configuration this runs, over HTTP exactly as Weaviate
sends it:

1. **first requests** (scheduled only): right after readiness, one request of each kind, then five
   more: the first should be as fast as the later ones (weights resident, warm-up done).
2. **text idle**: text queries one at a time, nothing else running.
3. **heavy only**: `--heavy-clients` clients (kinds from `--heavy` in turn) send back to back.
4. **mixed**: the same heavy clients, plus one client sending a text query, waiting for its answer,
   pausing `--text-interval-s`, and so on.
5. **per kind at c=`--concurrency`**: each kind alone, that many clients back to back.

Configurations (`--configs`): `scheduled` (the server's defaults), `unbatched` (the same server
with `--max-batch-size 1`: every forward alone, in the scheduler's order) and `reference` (the
reference container's way: one request at a time behind a lock shared by every client, full-length
text, `--max-batch-size 15 --max-wait-ms 0 --no-text-trim`, always float32).

Targets (issue 11): text p99 under load <= 2x its idle p99 plus one encoder block's time; heavy
throughput with queries within 10% of without; per-item p50 at c=8 no worse than `unbatched` while
throughput is at least as high. The block time is estimated from the first-requests phase (the
slowest heavy kind's per-forward time divided by its encoder's blocks + 2)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.inputs import Payloads
from bench.load import HttpClient
from bench.report import table
from bench.run import BASELINE_FLAGS, hardware
from bench.server import Access, ServerProcess, metric_samples
from imagebind_vectorizer.kinds import InputKind, parse_encoders
from imagebind_vectorizer.model.config import load_config

CONFIGS = {
    "scheduled": [],
    "unbatched": ["--max-batch-size", "1"],
    "reference": list(BASELINE_FLAGS),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.mixed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-config", default="huge", help="architecture preset or JSON file (default huge)")
    parser.add_argument("--checkpoint", help="real weights; default --random-weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="compute dtype of every server (default float32)")
    parser.add_argument("--heavy", default="image,audio,video", help="heavy kinds kept in flight")
    parser.add_argument("--heavy-clients", type=int, default=8, help="heavy requests in flight (default 8)")
    parser.add_argument("--text-interval-s", type=float, default=0.5,
                        help="pause between one text answer and the next query (default 0.5)")
    parser.add_argument("--duration-s", type=float, default=120.0, help="seconds per phase (default 120)")
    parser.add_argument("--kinds", default="text,image,audio,video", help="kinds of the per-kind phase")
    parser.add_argument("--concurrency", type=int, default=8, help="clients of the per-kind phase (default 8)")
    parser.add_argument("--configs", default="scheduled,unbatched,reference",
                        help=f"server configurations, of {', '.join(CONFIGS)}")
    parser.add_argument("--text-priority", default=None, help="send texts with x-imagebind-priority: this")
    parser.add_argument("--server-arg", action="append", default=[], metavar="FLAG",
                        help="extra flag for every server (repeat)")
    Access.add_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    args.access = Access.of(parser, args)
    args.heavy_list = [InputKind.parse(k) for k in args.heavy.split(",") if k.strip()]
    args.kind_list = [InputKind.parse(k) for k in args.kinds.split(",") if k.strip()]
    args.config_list = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(args.config_list) - set(CONFIGS)
    if unknown:
        parser.error(f"--configs: unknown {sorted(unknown)}")
    return args


# Load ---------------------------------------------------------------------------------------------
@dataclass
class Samples:
    """Latencies (seconds) of successful requests per kind, and errors, over one phase."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, took: float | None, error: str | None = None) -> None:
        with self.lock:
            if error is None and took is not None:
                self.latencies.setdefault(kind, []).append(took)
            elif error is not None:
                self.errors.append(f"{kind}: {error}")

    def stats(self, kind: str) -> dict[str, Any]:
        values = np.asarray(self.latencies.get(kind, [])) * 1000
        if not len(values):
            return {"requests": 0, "items_per_s": 0.0, "p50_ms": None, "p99_ms": None}
        return {"requests": len(values), "items_per_s": len(values) / self.seconds if self.seconds else 0.0,
                "p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
                "max_ms": float(values.max())}


class Clients:
    """Closed-loop HTTP clients sharing one stop time and, for the reference, one lock."""

    def __init__(self, port: int, access: Access, samples: Samples, *, lock: threading.Lock | None, stop_at: float,
                 text_priority: str | None) -> None:
        self.port, self.access, self.samples, self.lock, self.stop_at = port, access, samples, lock, stop_at
        self.text_priority = text_priority
        self.counter = iter(range(10**9))
        self.counter_lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def add(self, payloads: Payloads, *, pause_s: float = 0.0, offset: int = 0) -> None:
        thread = threading.Thread(target=self._client, args=(payloads, pause_s, offset), daemon=True)
        self.threads.append(thread)

    def run(self) -> None:
        started = time.monotonic()
        for thread in self.threads:
            thread.start()
        for thread in self.threads:
            thread.join()
        self.samples.seconds = time.monotonic() - started

    def _client(self, payloads: Payloads, pause_s: float, offset: int) -> None:
        client = HttpClient(self.port, 3600, self.access)
        headers = {"x-imagebind-priority": self.text_priority} \
            if self.text_priority and payloads.kind is InputKind.TEXT else {}
        kind = payloads.kind.value
        try:
            while time.monotonic() < self.stop_at:
                with self.counter_lock:
                    index = offset + next(self.counter)
                began = time.monotonic()
                with self.lock or contextlib.nullcontext():
                    status, body = client.post(payloads.http_body(index), headers)
                took = time.monotonic() - began
                self.samples.add(kind, took, None if status == 200 else f"HTTP {status}: {body[:160]!r}")
                if pause_s:
                    time.sleep(pause_s)
        finally:
            client.close()


def phase(server: ServerProcess, specs: list[tuple[Payloads, float]], duration_s: float, *, serialize: bool,
          shared: threading.Lock | None = None, text_priority: str | None = None, offset: int = 0) -> Samples:
    samples = Samples()
    lock = shared if shared is not None else (threading.Lock() if serialize else None)
    clients = Clients(server.http_port, server.access, samples, lock=lock, stop_at=time.monotonic() + duration_s,
                      text_priority=text_priority)
    for payloads, pause in specs:
        clients.add(payloads, pause_s=pause, offset=offset)
    clients.run()
    return samples


# One server configuration ---------------------------------------------------------------------------
def run_config(args: argparse.Namespace, name: str, payloads: dict[InputKind, Payloads], stamp: str) -> dict[str, Any]:
    kinds = sorted({*args.heavy_list, *args.kind_list, InputKind.TEXT}, key=list(InputKind).index)
    encoders = ",".join(parse_encoders([k.value for k in kinds]))
    weights = ["--checkpoint", args.checkpoint] if args.checkpoint else ["--random-weights"]
    dtype = "float32" if name == "reference" else args.dtype  # the reference container runs float32
    flags = ["--model-config", args.model_config, "--device", args.device, "--dtype", dtype,
             "--modalities", encoders, "--cache-size", "0", "--queue-size", "100000", *weights, *CONFIGS[name],
             *args.server_arg]
    serialize = name == "reference"
    record: dict[str, Any] = {"config": name, "flags": flags}
    server = ServerProcess(flags, args.out / "logs" / f"{stamp}-mixed-{name}.log", args.access)
    text, heavy = payloads[InputKind.TEXT], [payloads[k] for k in args.heavy_list]
    with server:
        record["ready_s"] = round(server.ready_s or 0, 2)
        record["meta_dtype"] = server.meta().get("dtype")
        print(f"[{name}] ready in {record['ready_s']} s", flush=True)
        if name == "scheduled":
            record["first_requests"] = first_requests(server, [text, *heavy])
            for row in record["first_requests"]:
                print(f"[{name}] first {row['kind']}: {row['first_ms']:.0f} ms, "
                      f"then median {row['next_median_ms']:.0f} ms", flush=True)
        else:  # warm the kernels the same way, unmeasured
            first_requests(server, [text, *heavy], repeats=1)
        offset = 1_000_000
        idle = phase(server, [(text, args.text_interval_s)], args.duration_s, serialize=serialize,
                     text_priority=args.text_priority, offset=offset)
        record["text_idle"] = idle.stats("text") | {"errors": len(idle.errors)}
        print(f"[{name}] text idle: {fmt_stats(record['text_idle'])}", flush=True)
        heavy_specs = [(heavy[i % len(heavy)], 0.0) for i in range(args.heavy_clients)]
        alone = phase(server, heavy_specs, args.duration_s, serialize=serialize)
        record["heavy_only"] = heavy_summary(alone, args.heavy_list)
        print(f"[{name}] heavy only: {record['heavy_only']['items_per_s']:.3f} items/s", flush=True)
        lock = threading.Lock() if serialize else None  # the text client waits for the same lock
        text_model_s = forward_seconds(server.metrics(), "text")
        mixed = phase(server, [*heavy_specs, (text, args.text_interval_s)], args.duration_s,
                      serialize=serialize, shared=lock, text_priority=args.text_priority, offset=2 * offset)
        text_model_s = forward_seconds(server.metrics(), "text") - text_model_s
        record["mixed"] = {"text": mixed.stats("text"), "heavy": heavy_summary(mixed, args.heavy_list),
                           "text_model_share": text_model_s / mixed.seconds if mixed.seconds else None,
                           "errors": len(mixed.errors), "first_error": mixed.errors[0] if mixed.errors else None}
        print(f"[{name}] mixed: text {fmt_stats(record['mixed']['text'])}; heavy "
              f"{record['mixed']['heavy']['items_per_s']:.3f} items/s; the texts' own forwards took "
              f"{100 * (record['mixed']['text_model_share'] or 0):.1f}% of the time", flush=True)
        record["per_kind"] = []
        for kind in args.kind_list:
            samples = phase(server, [(payloads[kind], 0.0)] * args.concurrency, args.duration_s,
                            serialize=serialize, offset=3 * offset)
            row = {"kind": kind.value, "concurrency": args.concurrency, **samples.stats(kind.value),
                   "errors": len(samples.errors)}
            record["per_kind"].append(row)
            print(f"[{name}] {kind.value} at c={args.concurrency}: {fmt_stats(row)}", flush=True)
        record["preemptions"] = preemptions(server.metrics())
        record["peak_rss_mib"] = server.peak_rss_mib()
    return record


def first_requests(server: ServerProcess, kinds: list[Payloads], repeats: int = 6) -> list[dict[str, Any]]:
    """Each kind once right away, then `repeats - 1` more: (first, median of the rest) in ms."""
    client = HttpClient(server.http_port, 3600, server.access)
    rows = []
    try:
        for payloads in kinds:
            took = []
            for index in range(repeats):
                began = time.monotonic()
                status, body = client.post(payloads.http_body(900_000 + index))
                if status != 200:
                    raise RuntimeError(f"{payloads.kind.value}: HTTP {status}: {body[:200]!r}")
                took.append((time.monotonic() - began) * 1000)
            rows.append({"kind": payloads.kind.value, "first_ms": took[0],
                         "next_median_ms": float(np.median(took[1:])) if len(took) > 1 else took[0]})
    finally:
        client.close()
    return rows


def heavy_summary(samples: Samples, kinds: list[InputKind]) -> dict[str, Any]:
    per_kind = {k.value: samples.stats(k.value) for k in kinds}
    return {"items_per_s": sum(s["items_per_s"] for s in per_kind.values()), "per_kind": per_kind,
            "errors": len(samples.errors)}


def forward_seconds(metrics_text: str, kind: str) -> float:
    """The model's own seconds of forward passes for `kind` so far (not counting paused time)."""
    return sum(value for labels, value in metric_samples(metrics_text, "imagebind_stage_seconds_sum")
               if labels.get("kind") == kind and labels.get("stage") == "forward")


def preemptions(metrics_text: str) -> dict[str, float]:
    return {labels["kind"]: value for labels, value in metric_samples(metrics_text, "imagebind_preemptions_total")}


def fmt_stats(stats: dict[str, Any]) -> str:
    if not stats.get("requests"):
        return "no answers"
    return (f"{stats['requests']} answers, p50 {stats['p50_ms']:.0f} ms, p99 {stats['p99_ms']:.0f} ms, "
            f"{stats['items_per_s']:.3f}/s")


# Summary --------------------------------------------------------------------------------------------
def block_seconds(record: dict[str, Any], args: argparse.Namespace) -> float | None:
    """One encoder block's time for the slowest heavy kind: its per-forward time (median of the
    first-requests phase, divided by forwards per item) over its encoder's blocks + 2 steps."""
    scheduled = next((r for r in record["configs"] if r["config"] == "scheduled"), None)
    if scheduled is None:
        return None
    config = load_config(args.model_config)
    estimates = []
    for row in scheduled["first_requests"]:
        kind = InputKind(row["kind"])
        if kind is InputKind.TEXT:
            continue
        blocks = getattr(config, f"{kind.encoder}_num_blocks")
        estimates.append(row["next_median_ms"] / 1000 / kind.facts.rows_per_item / (blocks + 2))
    return max(estimates) if estimates else None


def summarize(record: dict[str, Any], args: argparse.Namespace) -> None:
    block = block_seconds(record, args)
    record["block_s_estimate"] = block
    rows, verdicts = [], {}
    for r in record["configs"]:
        idle_p99 = r["text_idle"]["p99_ms"]
        mixed_p99 = r["mixed"]["text"]["p99_ms"]
        alone, mixed = r["heavy_only"]["items_per_s"], r["mixed"]["heavy"]["items_per_s"]
        target = 2 * idle_p99 + (block or 0) * 1000 if idle_p99 is not None else None
        ratio = mixed / alone if alone else None
        # the queries' own forwards take model time no scheduler can give back: the net ratio is
        # the heavy throughput over what is left of it (1 - their share)
        share = r["mixed"].get("text_model_share")
        net = ratio / (1 - share) if ratio is not None and share is not None and share < 1 else None
        verdicts[r["config"]] = {"text_p99_target_ms": target,
                                 "text_p99_ok": None if target is None or mixed_p99 is None else mixed_p99 <= target,
                                 "heavy_throughput_ratio": ratio,
                                 "heavy_throughput_ok": None if ratio is None else ratio >= 0.9,
                                 "text_model_share": share, "heavy_throughput_ratio_net": net}
        rows.append([r["config"], r["text_idle"]["p50_ms"], idle_p99, r["mixed"]["text"]["p50_ms"], mixed_p99,
                     target, alone, mixed, ratio, share, net])
    record["verdicts"] = verdicts
    print(f"\n== text queries during an import ({args.heavy_clients} heavy requests in flight: "
          f"{args.heavy}); one block ~ {0 if block is None else block * 1000:.0f} ms")
    print(table(("config", "idle p50 ms", "idle p99 ms", "loaded p50 ms", "loaded p99 ms", "p99 target ms",
                 "heavy/s alone", "heavy/s w/ queries", "ratio", "texts' share", "net ratio"), rows))
    by = {r["config"]: {row["kind"]: row for row in r["per_kind"]} for r in record["configs"]}
    comparisons = []
    for kind in args.kind_list:
        base = by.get("scheduled", {}).get(kind.value)
        if base is None:
            continue
        for other in ("unbatched", "reference"):
            row = by.get(other, {}).get(kind.value)
            if row is None or not row.get("requests") or not base.get("requests"):
                continue
            comparisons.append([kind.value, other, base["p50_ms"], row["p50_ms"], base["p50_ms"] / row["p50_ms"],
                                base["p99_ms"], row["p99_ms"], base["items_per_s"], row["items_per_s"],
                                base["items_per_s"] / row["items_per_s"] if row["items_per_s"] else None])
    record["per_kind_ratios"] = [dict(zip(("kind", "vs", "p50_ms", "vs_p50_ms", "p50_ratio", "p99_ms", "vs_p99_ms",
                                           "items_per_s", "vs_items_per_s", "throughput_ratio"), c, strict=True))
                                 for c in comparisons]
    print(f"\n== each kind alone at c={args.concurrency}: scheduled vs the others "
          "(p50 x: lower is better, throughput x: higher is better)")
    print(table(("kind", "vs", "p50 ms", "vs p50 ms", "p50 x", "p99 ms", "vs p99 ms", "items/s", "vs items/s",
                 "throughput x"), comparisons))
    scheduled = next((r for r in record["configs"] if r["config"] == "scheduled"), None)
    if scheduled is not None:
        print("\n== first requests after ready (scheduled)")
        print(table(("kind", "first ms", "median of next 5 ms"),
                    [[r["kind"], r["first_ms"], r["next_median_ms"]] for r in scheduled["first_requests"]]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    kinds = sorted({*args.heavy_list, *args.kind_list, InputKind.TEXT}, key=list(InputKind).index)
    print(f"generating inputs for {', '.join(k.value for k in kinds)} ...", flush=True)
    payloads = {kind: Payloads.generate(kind) for kind in kinds}
    record: dict[str, Any] = {"hardware": hardware(args.device), "started": stamp, "mode": "mixed",
                              "settings": {k: v for k, v in vars(args).items()
                                           if k not in ("heavy_list", "kind_list", "config_list", "out", "api_key",
                                                        "access")},
                              "security": args.access.describe(),
                              "inputs": {k.value: p.describe() for k, p in payloads.items()}, "configs": []}
    began = time.monotonic()
    for name in args.config_list:
        record["configs"].append(run_config(args, name, payloads, stamp))
    summarize(record, args)
    record["wall_s"] = round(time.monotonic() - began, 1)
    path = args.out / f"mixed-{stamp}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"\nresults: {path} ({record['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
