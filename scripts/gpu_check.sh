#!/usr/bin/env bash
# The prepared GPU check, for a lent CUDA machine (one short run): the CUDA tests, fp16/bf16 vs
# fp32 cosine on the full huge architecture, what --dtype auto chooses there and why, the benchmark
# on the GPU, and the mixed-load scenario (text queries during an import). Output goes to $OUT
# (or ./gpu-out). Usage: bash scripts/gpu_check.sh [bench duration seconds]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}; mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider 2>&1 | tee "$out/cuda-tests.log"
python3 scripts/gpu_check.py "$out/precision.json" 2>&1 | tee "$out/precision.log"
python3 -m bench.run --device cuda --dtype float32,bfloat16 --kinds text,image,audio,video \
    --concurrency 1,8,16 --duration-s "${1:-15}" --out "$out" 2>&1 | tee "$out/bench.log"
python3 -c "import torch; from imagebind_vectorizer.runtime.precision import choose_dtype; \
c = choose_dtype('auto', torch.device('cuda')); print(c.dtype, '|', c.reason, '|', c.speed)" \
    2>&1 | tee "$out/dtype-auto.txt"
python3 -m bench.mixed --device cuda --dtype auto --duration-s "${1:-15}" --heavy-clients 8 \
    --configs scheduled,reference --out "$out" 2>&1 | tee "$out/mixed.log"
