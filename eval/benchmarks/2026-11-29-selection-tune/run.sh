#!/bin/bash
# Tuning data for the selection policies, on problems the evaluation does not use: GSM8K test
# 501-530 (offset 500), target-only and scot under the paper's read-out (so most problems end after a
# short answer; `scot report --replay` re-decides every policy from the stored drafts and the
# target's option probabilities, grading rejections by the target-only lines). Settings of
# ../2026-11-27-cpu-cap512 (512-token caps, seed 0, one request at a time, modes interleaved in
# chunks of 5); resumable like that run.
HERE=$(cd "$(dirname "$0")" && pwd)
ORDER=""
for off in $(seq 500 5 525); do ORDER="$ORDER gsm8k:$off"; done
RUN_DIR=$HERE PORT=${PORT:-50554} MODES="target-only scot" \
  SCOT_MODE_ARGS="--selection-policy paper" ORDER="$ORDER" \
  exec "$HERE/../2026-11-27-cpu-cap512/run.sh"
