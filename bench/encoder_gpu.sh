#!/usr/bin/env bash
# GPU encoder benchmark, for a session that has a CUDA machine (not runnable on the CPU-only box).
# Exports all variants (fp16's parity is then also checked on CUDA by bench.encoder's parity table),
# and runs the full grid with torch on cuda vs onnxruntime's CUDAExecutionProvider (IO binding).
# Usage: bench/encoder_gpu.sh [OUT_DIR]   (default: ./var/bench-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-var/bench-gpu}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1
py="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$py" -c "import onnxruntime as ort, sys; p = ort.get_available_providers(); print(p); sys.exit('CUDAExecutionProvider' not in p)"
"$py" - "$out/model" <<'PY'
import logging, sys
from pathlib import Path
from export.onnx_export import default_source, export_model
logging.basicConfig(level=logging.INFO)
export_model(default_source(), Path(sys.argv[1]))
PY
"$py" -m bench.encoder --device cuda --model-dir "$out/model" --threads "$(nproc)" | tee "$out/encoder_cuda.txt"
