#!/bin/bash
# SCoT with an accept threshold of 0.35 against target-only, GSM8K test 1-20, on the settings of
# ../2026-11-27-cpu-cap512 (512-token caps, seed 0, one request at a time), modes interleaved in
# chunks of 5. Resumable like that run.
cd "$(dirname "$0")"
BIN=${BIN:-$PWD/../../../target/release}
DATA=${DATA:-$PWD/../../../../shared/data}
PORT=${PORT:-50553}
URL=http://127.0.0.1:$PORT
THRESHOLD=${THRESHOLD:-0.35}
$BIN/scot up --port $PORT > up.log 2>&1 &
UP=$!
for i in $(seq 1 600); do grep -q "cluster up" up.log && break; sleep 2; done
sleep 5
COMMON="--coordinator $URL --draft-max-tokens 512 --thinking-max-tokens 512 --answer-max-tokens 96 --seed 0 --timeout-secs 3600 --no-progress --data $DATA/gsm8k.jsonl --limit 5"
mkdir -p results
for off in 0 5 10 15; do
  $BIN/scot eval $COMMON --offset $off --mode target-only --out results/gsm8k-target-only.jsonl >> eval.log 2>&1
  $BIN/scot eval $COMMON --offset $off --mode scot --accept-threshold $THRESHOLD \
    --out results/gsm8k-scot.jsonl >> eval.log 2>&1
  echo "$(date -u +%T) chunk $off done" >> eval.log
done
echo DONE >> eval.log
kill $UP
