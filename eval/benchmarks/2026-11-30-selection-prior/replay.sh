#!/bin/bash
# Re-decides the tuning run's GSM8K problems 510-529 (not used by calibrate.sh) offline under every
# policy of the replay grid (paper, debiased with prior.json on and off, vote, hybrid, with thresholds),
# from the stored drafts, answers and option probabilities. Writes held-out/ (the lines) and report/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../../target/release}
TUNE=../2026-11-29-selection-tune
cd "$HERE"
mkdir -p held-out
for mode in scot target-only; do
  grep -E '"id":"gsm8k-test-05[12][0-9]"' $TUNE/results/gsm8k-$mode.jsonl > held-out/gsm8k-$mode.jsonl
done
$BIN/scot report --results held-out --out-dir report --replay --prior prior.json \
  --costs ../2026-11-27-cpu-cap512/costs.json > report.json
