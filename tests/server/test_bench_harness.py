"""The benchmark harness runs end to end (tiny architecture, one dtype, one level): both servers
start, both transports answer without errors, ratios and the plot are written. It measures
nothing here; it only keeps `python -m bench.run` from rotting."""

from __future__ import annotations

import json
from pathlib import Path

from bench.run import main


def test_bench_runs_end_to_end(tiny_config_path: Path, tmp_path: Path) -> None:
    assert main(["--model-config", str(tiny_config_path), "--dtype", "float32", "--kinds", "text,image",
                 "--concurrency", "2", "--rounds", "2", "--probes", "1", "--matmul-size", "256",
                 "--out", str(tmp_path)]) == 0
    [result] = tmp_path.glob("bench-*.json")
    record = json.loads(result.read_text())
    levels = record["levels"]
    assert {(r["config"], r["kind"], r["transport"]) for r in levels} == {
        (config, kind, transport) for config in ("batched", "baseline") for kind in ("text", "image")
        for transport in ("http", "grpc")}
    assert all(r["errors"] == 0 and r["requests"] == 4 and r["items_per_s"] > 0 for r in levels)
    assert all(r["items_per_model_call"] == 1 for r in levels if r["config"] == "baseline")  # one at a time
    assert len(record["ratios"]) == 4
    assert [s["config"] for s in record["servers"]] == ["batched", "baseline"]
    assert all(s["peak_rss_mib"] > 0 for s in record["servers"])
    assert set(record["matmul_gflops"]["float32"]) == {"before", "after"}
    assert result.with_suffix(".png").stat().st_size > 0


def test_overload_bench_runs_end_to_end(tiny_config_path: Path, tmp_path: Path) -> None:
    """`python -m bench.overload` on the tiny architecture, seconds long: it only has to run and
    report every figure (the numbers themselves mean nothing here)."""
    from bench.overload import main as overload

    assert overload(["--model-config", str(tiny_config_path), "--duration-s", "2", "--calibrate-s", "1",
                     "--calibrate-concurrency", "2", "--overload", "2", "--hostile", "declared,stalled,tiny-texts",
                     "--server-arg=--body-timeout-s=1", "--out", str(tmp_path)]) == 0
    [result] = tmp_path.glob("overload-*.json")
    record = json.loads(result.read_text())
    assert record["capacity_images_per_s"] > 0 and record["hardware"]["cpu_cores"]
    for scenario in ("capacity", "hostile"):
        figures = record[scenario]
        assert figures["sent"] > 0 and figures["peak_rss_mib"] > 0 and figures["live_ms"]["n"] > 0
        assert {"share_429", "admitted_ms", "metrics_ms", "admitted_over_weaviate_timeout"} <= set(figures)
    attacks = record["hostile"]["attacks"]
    assert record["hostile"]["server_alive"]
    assert set(attacks["declared"]) == {"413"} and set(attacks["tiny-texts"]) == {"400"}


def test_bench_against_a_server_with_a_key_and_tls(tiny_config_path: Path, tmp_path: Path) -> None:
    """--api-key and --tls-*: the servers run with them, every client (HTTP as Weaviate sends the key,
    gRPC metadata, metrics and probes) reaches them, and the record says so without the key."""
    from tests.certs import TestCA

    ca = TestCA()
    cert, key = ca.server().write(tmp_path / "pki", "server")
    api_key = "bench-key-0123456789abcdef"
    assert main(["--model-config", str(tiny_config_path), "--dtype", "float32", "--kinds", "text",
                 "--concurrency", "1", "--rounds", "2", "--probes", "1", "--matmul-size", "256", "--no-baseline",
                 "--api-key", api_key, "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                 "--ca-file", str(ca.write(tmp_path / "pki" / "ca.pem")), "--out", str(tmp_path)]) == 0
    [result] = tmp_path.glob("bench-*.json")
    text = result.read_text()
    record = json.loads(text)
    assert {(r["transport"], r["errors"], r["requests"]) for r in record["levels"]} == {("http", 0, 2), ("grpc", 0, 2)}
    assert record["security"] == {"api_key": True, "tls": True}
    assert api_key not in text


def test_mixed_load_scenario_runs_end_to_end(tiny_config_path: Path, tmp_path: Path) -> None:
    """`python -m bench.mixed` on the tiny model: every phase answers without errors and the summary
    compares what it promises to compare (text idle vs loaded, heavy alone vs with queries, per kind
    against the reference, first requests). Run against servers with a key and TLS, as bench.run can:
    every client reaches them, and the record says so without the key."""
    from bench.mixed import main as mixed
    from tests.certs import TestCA

    ca = TestCA()
    cert, key = ca.server().write(tmp_path / "pki", "server")
    api_key = "bench-key-0123456789abcdef"
    assert mixed(["--model-config", str(tiny_config_path), "--heavy", "image", "--heavy-clients", "2",
                  "--kinds", "image", "--concurrency", "2", "--duration-s", "0.5", "--text-interval-s", "0.05",
                  "--configs", "scheduled,reference", "--api-key", api_key, "--tls-cert-file", str(cert),
                  "--tls-key-file", str(key), "--ca-file", str(ca.write(tmp_path / "pki" / "ca.pem")),
                  "--out", str(tmp_path)]) == 0
    [result] = tmp_path.glob("mixed-*.json")
    text = result.read_text()
    record = json.loads(text)
    assert record["security"] == {"api_key": True, "tls": True} and api_key not in text
    configs = {c["config"]: c for c in record["configs"]}
    assert set(configs) == {"scheduled", "reference"}
    for config in configs.values():
        assert config["text_idle"]["requests"] > 0 and config["mixed"]["text"]["requests"] > 0
        assert config["mixed"]["errors"] == 0 and config["heavy_only"]["errors"] == 0
        assert 0 < config["mixed"]["text_model_share"] < 1  # the texts' forwards, from the server's metrics
        assert set(config["mixed"]["heavy"]["per_kind"]) == {"image"}
        assert [row["kind"] for row in config["per_kind"]] == ["image"]
    assert [r["kind"] for r in configs["scheduled"]["first_requests"]] == ["text", "image"]
    assert {(r["kind"], r["vs"]) for r in record["per_kind_ratios"]} == {("image", "reference")}
    assert set(record["verdicts"]) == {"scheduled", "reference"} and record["block_s_estimate"] > 0
