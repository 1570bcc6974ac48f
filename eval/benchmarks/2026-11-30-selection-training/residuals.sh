#!/bin/bash
# Caches the residual streams (entering the target's last block) of every training and held-out
# example, and scores the untrained target on them: `scot train selection --epochs 0` (two compute
# threads). The cache lives outside the repository.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../../target/release}
MODELS=${SCOT_MODEL_DIR:-$HOME/.cache/scot/models}
CACHE=${CACHE:-/tmp/scot-residuals}
cd "$HERE"
RUST_LOG=${RUST_LOG:-info} RAYON_NUM_THREADS=${THREADS:-2} $BIN/scot train selection \
  --model $MODELS/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
  --data train/gsm8k.jsonl --eval-data held-out/gsm8k.jsonl held-out/math500.jsonl \
  --cache-dir $CACHE --epochs 0 --out untrained > logs/untrained.json 2> logs/untrained.log
