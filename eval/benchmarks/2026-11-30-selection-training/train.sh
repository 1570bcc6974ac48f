#!/bin/bash
# Trains selection adapters for the default target on train/gsm8k.jsonl and scores them on the
# held-out examples (the evaluation's own stored drafts: GSM8K test 1-100, MATH-500 1-50) before
# training and after every epoch. Needs the residual streams cached by residuals.sh (else computes
# them). Writes paper/ (the paper's recipe: r 8, alpha 32, q_proj + v_proj, lr 1e-4, 5 epochs) and
# wide/ (one alternative fixed in advance, not tuned on the held-out set: lr 1e-3 on q/k/v/o).
# TAG (e.g. -96) is appended to both folder names: a run on a grown data set writes new folders
# (a checkpoint of other data is refused, and the earlier results stay).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../../target/release}
MODELS=${SCOT_MODEL_DIR:-$HOME/.cache/scot/models}
CACHE=${CACHE:-/tmp/scot-residuals}
cd "$HERE"
TAG=${TAG:-}
run() {
  local name=$1$TAG; shift
  RUST_LOG=${RUST_LOG:-info} RAYON_NUM_THREADS=${THREADS:-2} $BIN/scot train selection \
    --model $MODELS/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
    --data train/gsm8k.jsonl --eval-data held-out/gsm8k.jsonl held-out/math500.jsonl \
    --cache-dir $CACHE --out $name "$@" > logs/$name.json 2> logs/$name.log
}
run paper
run wide --lr 1e-3 --modules q_proj,k_proj,v_proj,o_proj
