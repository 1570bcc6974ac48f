#!/bin/bash
# Re-decides the evaluation's stored problems (GSM8K test 1-100 and MATH-500 1-50 as far as their scot
# lines keep 5 drafts with text: 90 + 45) under every selection policy, with the option
# probabilities of each selector that train.sh wrote (selector-probs.jsonl) in place of the stored
# target's: untrained/ (the base target through the trainer's dense last block: the control),
# paper/ and wide/ (with TAG: paper$TAG/, wide$TAG/, see train.sh). Rejections are graded by the
# target-only reference lines. Writes report-*/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../../target/release}
cd "$HERE"
A=../2026-11-29-selection-default
B=../2026-11-30-selection-default-full
TAG=${TAG:-}
for name in untrained paper$TAG wide$TAG; do
  $BIN/scot report --replay --selector-probs $name/selector-probs.jsonl \
    --costs ../2026-11-27-cpu-cap512/costs.json --out-dir report-$name \
    --results $A/results/gsm8k-scot.jsonl $A/results/math500-scot.jsonl \
              $B/results/gsm8k-scot.jsonl $B/results/math500-scot.jsonl \
              $A/reference/gsm8k-target-only.jsonl $A/reference/math500-target-only.jsonl \
              $B/reference/gsm8k-target-only.jsonl $B/reference/math500-target-only.jsonl \
    > report-$name.json
done
