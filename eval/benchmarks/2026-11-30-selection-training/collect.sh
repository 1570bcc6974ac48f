#!/bin/bash
# Selection training data for the default pair (issue 18), on GSM8K test problems the evaluation does
# not use: 501-530 from the drafts the tuning run stored (../2026-11-29-selection-tune), then 531
# onwards written by a draft node (5 drafts, temperature 0.6, 512-token cap, seed 0: the evaluation's
# settings). Every prompt is rendered by a target node (render-only: nothing scored). Resumable:
# problems already in train/gsm8k.jsonl are skipped. LIMIT bounds the drafted window.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../../target/release}
MODELS=${SCOT_MODEL_DIR:-$HOME/.cache/scot/models}
DATA=${DATA:-$HERE/../../../../shared/data}
PORT=${PORT:-50581}
LIMIT=${LIMIT:-470}
cd "$HERE"
mkdir -p train logs
RAYON_NUM_THREADS=1 $BIN/target-node --listen 127.0.0.1:$PORT \
  --model $MODELS/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf > logs/target-node.log 2>&1 &
TARGET=$!
RAYON_NUM_THREADS=1 $BIN/draft-node --listen 127.0.0.1:$((PORT + 1)) \
  --model $MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf > logs/draft-node.log 2>&1 &
DRAFT=$!
trap 'kill $TARGET $DRAFT 2>/dev/null' EXIT
for i in $(seq 1 300); do
  grep -q serving logs/target-node.log && grep -q serving logs/draft-node.log && break; sleep 2
done
$BIN/scot collect selection --target-node http://127.0.0.1:$PORT \
  --from-results ../2026-11-29-selection-tune/results/gsm8k-scot.jsonl \
  --out train/gsm8k.jsonl > logs/collect-stored.json 2> logs/collect-stored.log
$BIN/scot collect selection --target-node http://127.0.0.1:$PORT \
  --draft-node http://127.0.0.1:$((PORT + 1)) --data $DATA/gsm8k.jsonl --offset 530 --limit $LIMIT \
  --out train/gsm8k.jsonl > logs/collect-drafted.json 2> logs/collect-drafted.log
