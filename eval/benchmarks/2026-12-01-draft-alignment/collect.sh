#!/bin/bash
# Alignment data for the default pair (issue 18): the 1.5B target's chains of thought (greedy, the
# evaluation's caps: 512 thinking tokens, 96 answer tokens) with the 0.5B draft's prompt as the draft
# node renders it. Held-out: GSM8K test 1-HELD (chains only scored, never learnt). Training: GSM8K test
# 531 onwards (problems the evaluation does not use; the selection data's range). Resumable: problems
# already in a file are skipped. LIMIT bounds the training window.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../../target/release}
MODELS=${SCOT_MODEL_DIR:-$HOME/.cache/scot/models}
DATA=${DATA:-$HERE/../../../../shared/data}
PORT=${PORT:-50601}
HELD=${HELD:-15}
LIMIT=${LIMIT:-469}
cd "$HERE"
mkdir -p data logs
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
COMMON="--target-node http://127.0.0.1:$PORT --draft-node http://127.0.0.1:$((PORT + 1)) \
  --data $DATA/gsm8k.jsonl --thinking-max-tokens 512 --answer-max-tokens 96"
$BIN/scot collect alignment $COMMON --offset 0 --limit $HELD --out data/held-out-gsm8k.jsonl \
  > logs/collect-held-out.json 2> logs/collect-held-out.log
$BIN/scot collect alignment $COMMON --offset 530 --limit $LIMIT --out data/train-gsm8k.jsonl \
  > logs/collect-train.json 2> logs/collect-train.log
