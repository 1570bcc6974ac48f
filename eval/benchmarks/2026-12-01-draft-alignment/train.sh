#!/bin/bash
# Aligns the default draft (Qwen2.5-Coder-0.5B, Q4_K_M) on the target's chains: LoRA r 8, alpha 32 on
# q_proj + v_proj of the draft's last block (the selection recipe's shape; the paper does not state its
# alignment adapter's), lr 1e-3 (fixed in advance, not tuned on the held-out chains: the few examples
# give few steps, 1e-4 barely moves the factors), 3 epochs, chains after which the target answered
# right, cut at 512 tokens. Held-out chains (GSM8K test 1-HELD) are scored before training and after every
# epoch. The residual cache lives outside the repository. Writes aligned/ and logs/aligned.*.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../../target/release}
MODELS=${SCOT_MODEL_DIR:-$HOME/.cache/scot/models}
CACHE=${CACHE:-/tmp/scot-draft-residuals}
cd "$HERE"
RUST_LOG=${RUST_LOG:-info} RAYON_NUM_THREADS=${THREADS:-2} $BIN/scot train alignment \
  --model $MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
  --data data/train-gsm8k.jsonl --eval-data data/held-out-gsm8k.jsonl \
  --epochs ${EPOCHS:-3} --lr ${LR:-1e-3} --max-chain-tokens 512 \
  --cache-dir $CACHE --out aligned > logs/aligned.json 2> logs/aligned.log
