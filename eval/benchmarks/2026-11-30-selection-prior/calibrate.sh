#!/bin/bash
# The default target's selection prior for n = 5 (default template set), from the drafts the tuning run
# stored for GSM8K test 500-509 (../2026-11-29-selection-tune): each problem's 5 drafts scored in all 5
# cyclic orders on a target node of its own (50 selection prefills). Writes prior.json beside this
# script. Problems 510-529 of the same run are left out of it for the replay (replay.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../../target/release}
MODELS=${SCOT_MODEL_DIR:-$HOME/.cache/scot/models}
PORT=${PORT:-50572}
cd "$HERE"
$BIN/target-node --listen 127.0.0.1:$PORT --model $MODELS/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf > calibrate-node.log 2>&1 &
NODE=$!
trap 'kill $NODE 2>/dev/null' EXIT
for i in $(seq 1 300); do grep -q "serving" calibrate-node.log && break; sleep 2; done
$BIN/scot calibrate --target-node http://127.0.0.1:$PORT \
  --drafts ../2026-11-29-selection-tune/results/gsm8k-scot.jsonl \
  --n 5 --limit 10 --out prior.json > calibrate.json 2> calibrate.log
