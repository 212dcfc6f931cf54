"""`--dtype auto` and the warning for a slow explicit dtype, with an injected speed probe standing
in for the CPU classes that behave differently (AMX Xeon, AVX2-only EPYC)."""

from __future__ import annotations

import torch

from imagebind_vectorizer.runtime.precision import choose_dtype, linear_gflops

CPU = torch.device("cpu")
AVX2_ONLY = frozenset({"avx2", "fma"})
AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})


def probe(rates: dict[torch.dtype, float]):
    calls: list[torch.dtype] = []

    def measure(device: torch.device, dtype: torch.dtype) -> float:
        calls.append(dtype)
        return rates[dtype]

    return measure, calls


def test_auto_keeps_float32_where_bfloat16_is_emulated() -> None:
    measure, calls = probe({torch.float32: 97.0, torch.bfloat16: 17.0})  # the AVX2 EPYC of issue 11
    choice = choose_dtype("auto", CPU, probe=measure, flags=AVX2_ONLY)
    assert choice.dtype == "float32" and choice.torch_dtype is torch.float32 and choice.warning is None
    assert "no AMX or AVX512-BF16" in choice.reason and "bfloat16 0.18x" in choice.reason
    assert set(calls) == {torch.float32, torch.bfloat16}


def test_auto_picks_bfloat16_where_it_is_clearly_faster() -> None:
    measure, _ = probe({torch.float32: 180.0, torch.bfloat16: 700.0})
    choice = choose_dtype("auto", CPU, probe=measure, flags=AMX)
    assert choice.dtype == "bfloat16"
    assert "3.9x faster" in choice.reason and "amx_bf16, avx512_bf16" in choice.reason


def test_auto_wants_a_clear_gain_before_giving_up_float32() -> None:
    measure, _ = probe({torch.float32: 100.0, torch.bfloat16: 110.0})
    assert choose_dtype("auto", CPU, probe=measure, flags=AMX).dtype == "float32"


def test_each_dtype_keeps_its_best_round() -> None:
    """A round slowed by a neighbour's process must not decide: rates alternate, the best counts."""
    rounds = iter([100.0, 20.0, 30.0, 400.0, 90.0, 390.0])  # fp32, bf16, fp32, bf16, ...

    def measure(device: torch.device, dtype: torch.dtype) -> float:
        return next(rounds)

    choice = choose_dtype("auto", CPU, probe=measure, flags=AMX)
    assert choice.dtype == "bfloat16" and choice.speed["bfloat16"] == 4.0


def test_an_explicit_slow_dtype_is_kept_with_a_warning_naming_the_slowdown() -> None:
    measure, _ = probe({torch.float32: 97.0, torch.bfloat16: 24.25})
    choice = choose_dtype("bfloat16", CPU, probe=measure, flags=AVX2_ONLY)
    assert choice.dtype == "bfloat16"
    assert choice.warning is not None
    assert "0.25x the speed of float32" in choice.warning and "4.0x slower" in choice.warning
    fast, _ = probe({torch.float32: 97.0, torch.bfloat16: 400.0})
    assert choose_dtype("bfloat16", CPU, probe=fast, flags=AMX).warning is None


def test_explicit_float32_is_not_measured() -> None:
    measure, calls = probe({torch.float32: 1.0})
    choice = choose_dtype("float32", CPU, probe=measure, flags=AVX2_ONLY)
    assert choice.dtype == "float32" and choice.warning is None and calls == []
    assert choice.reason == "float32: set explicitly"


def test_the_real_probe_measures_something() -> None:
    assert linear_gflops(CPU, torch.float32, tokens=16, width=64, min_seconds=0.001) > 0


def test_the_runtime_uses_the_choice_logs_a_slow_one_and_reports_why(
        tiny_settings, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """Wiring: Embedder computes in the chosen dtype, says why in its ModelInfo (-> /meta, gRPC Meta)
    and logs the warning for an explicit slow dtype. Measurements injected for an AVX2-only CPU."""
    import logging

    from imagebind_vectorizer.runtime import precision
    from imagebind_vectorizer.runtime.embedder import Embedder

    emulated, _ = probe({torch.float32: 97.0, torch.bfloat16: 17.0})
    for requested in ("auto", "bfloat16"):
        monkeypatch.setitem(precision._MEASURED, (requested, "cpu"),
                            choose_dtype(requested, CPU, probe=emulated, flags=AVX2_ONLY))
    auto = Embedder(tiny_settings.replace(dtype="auto", random_weights=True), progress=False)
    assert auto.dtype is torch.float32
    assert auto.model_info().dtype == "float32" and "no AMX or AVX512-BF16" in auto.model_info().dtype_reason
    with caplog.at_level(logging.WARNING, logger="imagebind_vectorizer.runtime.embedder"):
        slow = Embedder(tiny_settings.replace(dtype="bfloat16", random_weights=True), progress=False)
    assert slow.dtype is torch.bfloat16 and slow.model_info().dtype == "bfloat16"
    assert any("--dtype bfloat16 runs a model-sized matmul at 0.18x" in r.getMessage() for r in caplog.records)
