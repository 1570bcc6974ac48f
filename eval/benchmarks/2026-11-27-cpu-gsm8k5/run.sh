#!/bin/bash
# Small CPU measurement: 5 GSM8K problems, three modes, run one after another.
URL=$1
CAPS="--draft-max-tokens 256 --thinking-max-tokens 256 --answer-max-tokens 96 --seed 0 --timeout-secs 1800 --no-progress"
for mode in target-only draft-only scot; do
  echo "== $mode start $(date -u +%FT%TZ)"
  /work/main/target/release/scot eval --coordinator $URL --data /work/shared/data/gsm8k.jsonl --mode $mode --limit 5 --out results/gsm8k-$mode.jsonl $CAPS
  echo "== $mode end $(date -u +%FT%TZ)"
done
