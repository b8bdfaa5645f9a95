#!/usr/bin/env bash
# Fine-tuning on a CUDA machine, one command: the BERT recipe (bf16 autocast, bigger batches,
# several epochs), its export (parity-checked), the sequence user tower (the default recipe: item
# vectors through onnxruntime CUDA, the tower itself with its learned per-item residuals is small
# enough for the CPU), then the full-ranking evaluation of both with the baselines and the zero-shot
# encoder, the popularity prior included, and the MMR sweep. Not runnable on the CPU-only box
# (train --device cuda refuses without a GPU).
# Usage: models/train_gpu.sh DATASET_DIR [OUT_DIR]   (default OUT_DIR: ./var/gpu)
# Knobs (environment): STEPS (default 3000: about 6 epochs of the amazon-office pairs at batch 128),
# BATCH (128), LR (1e-4); EPOCHS (20) for the sequence tower.
set -euo pipefail
cd "$(dirname "$0")/.."
dataset="${1:?usage: models/train_gpu.sh DATASET_DIR [OUT_DIR]}"
out="${2:-var/gpu}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1
py="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$py" -m stream.cli train "$dataset" --recipe bert --out "$out/train" --device cuda \
  --steps "${STEPS:-3000}" --batch-size "${BATCH:-128}" --lr "${LR:-1e-4}" 2>&1 | tee "$out/train.log"
"$py" -m stream.cli export --source "$out/train" --out "$out/model" --variant fp32 2>&1 | tee "$out/export.log"
"$py" -m stream.cli train "$dataset" --out "$out/sequence" --epochs "${EPOCHS:-20}" --item-residuals 2>&1 \
  | tee "$out/sequence.log"
"$py" -m stream.cli evaluate "$dataset" --model "$out/model" --model "$out/sequence" --mmr-sweep --out "$out/eval" 2>&1 \
  | tee "$out/eval.log"
