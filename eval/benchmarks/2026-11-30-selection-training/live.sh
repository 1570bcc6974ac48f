#!/bin/bash
# Confirming live run: the default cluster with the target serving the `paper` selection adapter
# (`scot up --target-lora paper`), scot mode under the paper's read-out (`--selection-policy paper`),
# on GSM8K test 1-10 with the evaluation's settings (../2026-11-27-cpu-cap512/run.sh: 512-token caps,
# seed 0, so the drafts are those stored and replayed). Compare each line's option probabilities
# with paper/selector-probs.jsonl (the trainer's) and its answer with the replay's. Writes live/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$HERE/live"
RUN_DIR=$HERE/live PORT=${PORT:-50591} MODES=scot SCOT_MODE_ARGS="--selection-policy paper" \
  UP_ARGS="--plaintext --target-lora $HERE/paper" ORDER="${ORDER:-gsm8k:0 gsm8k:5}" \
  "$HERE/../2026-11-27-cpu-cap512/run.sh"
