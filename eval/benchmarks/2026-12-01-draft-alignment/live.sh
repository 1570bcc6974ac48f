#!/bin/bash
# Confirming live run of the aligned draft: the default cluster with the draft nodes serving aligned/
# (`scot up --draft-lora aligned`), scot mode under the coordinator's default policy, on GSM8K test
# 1-LIVE with the evaluation's settings (../2026-11-27-cpu-cap512/run.sh: 512-token caps, answer 96,
# seed 0), so each draft is sampled with the seed of the stored run without the adapter
# (../2026-11-29-selection-default: baseline/ holds its lines for the same problems). Writes live/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LIVE=${LIVE:-10}
mkdir -p "$HERE/live" "$HERE/baseline"
head -n "$LIVE" "$HERE/../2026-11-29-selection-default/results/gsm8k-scot.jsonl" \
  > "$HERE/baseline/gsm8k-scot.jsonl"
ORDER=""
for off in $(seq 0 5 $((LIVE - 1))); do ORDER="$ORDER gsm8k:$off"; done
RUN_DIR=$HERE/live PORT=${PORT:-50611} MODES=scot ORDER="$ORDER" \
  UP_ARGS="--plaintext --draft-lora $HERE/aligned" "$HERE/../2026-11-27-cpu-cap512/run.sh"
# Both sides replayed with the target-only lines of the same problems (rejections are graded by them).
REF=$HERE/../2026-11-29-selection-default/reference/gsm8k-target-only.jsonl
for side in baseline live; do
  dir=$HERE/$side; [ $side = live ] && dir=$HERE/live/results
  "${BIN:-$HERE/../../../target/release}/scot" report --replay --results "$dir" "$REF" \
    --out-dir "$HERE/report-$side" > "$HERE/report-$side.json"
done
