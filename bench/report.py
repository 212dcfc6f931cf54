"""Tables on stdout, the JSON record and the PNG plot of one benchmark run."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


LEVEL_HEADERS = ("dtype", "config", "kind", "transport", "conc", "requests", "errors", "items/s", "p50 ms", "p95 ms",
                 "p99 ms", "items/call", "GFLOP/s", "% matmul")


def level_row(row: Mapping[str, Any]) -> list[Any]:
    return [row["dtype"], row["config"], row["kind"], row["transport"], row["concurrency"], row["requests"],
            row["errors"], row["items_per_s"], row["p50_ms"], row["p95_ms"], row["p99_ms"],
            row.get("items_per_model_call"), row.get("achieved_gflops"), row.get("percent_of_matmul")]


def plot(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.5 * len(kinds), 7.5), squeeze=False)
    series = sorted({(r["dtype"], r["config"], r["transport"]) for r in rows})
    pairs = sorted({(dtype, config) for dtype, config, _ in series})
    colors = {pair: f"C{i}" for i, pair in enumerate(pairs)}  # one colour per dtype and config
    for column, kind in enumerate(kinds):
        for dtype, config, transport in series:
            points = sorted((r["concurrency"], r["items_per_s"], r["p95_ms"]) for r in rows if r["kind"] == kind
                            and (r["dtype"], r["config"], r["transport"]) == (dtype, config, transport))
            if not points:
                continue
            style = "-" if config == "batched" else "--"
            marker = "o" if transport == "http" else "s"
            label = f"{config} {dtype} {transport}"
            xs = [p[0] for p in points]
            color = colors[(dtype, config)]
            axes[0][column].plot(xs, [p[1] for p in points], style, marker=marker, color=color, label=label)
            axes[1][column].plot(xs, [p[2] for p in points], style, marker=marker, color=color, label=label)
        axes[0][column].set_title(kind)
        axes[0][column].set_ylabel("items/s")
        axes[1][column].set_ylabel("p95 latency (ms)")
        for row in (0, 1):
            axes[row][column].set_xlabel("concurrent requests")
            axes[row][column].set_xscale("log", base=2)
            axes[row][column].grid(True, alpha=0.3)
        axes[1][column].set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
