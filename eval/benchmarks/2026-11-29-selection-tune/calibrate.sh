#!/bin/bash
# The default target's selection prior for n = 5 (the default template set), from the drafts this
# run stored for GSM8K test 501-520: every problem's 5 drafts scored in all 5 cyclic orders on a
# target node of its own (100 selection prefills). Writes prior.json beside this script.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../../target/release}
MODELS=${SCOT_MODEL_DIR:-$HOME/.cache/scot/models}
PORT=${PORT:-50571}
cd "$HERE"
$BIN/target-node --listen 127.0.0.1:$PORT --model $MODELS/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf > calibrate-node.log 2>&1 &
NODE=$!
echo $NODE > calibrate-node.pid
for i in $(seq 1 300); do grep -q "serving" calibrate-node.log && break; sleep 2; done
$BIN/scot calibrate --target-node http://127.0.0.1:$PORT --drafts results/gsm8k-scot.jsonl \
  --n 5 --limit 20 --out prior.json > calibrate.json 2> calibrate.log
STATUS=$?
kill $NODE
exit $STATUS
