#!/bin/bash
# SCoT with an accept threshold of 0.35 against target-only, GSM8K test 1-20, on the settings of
# ../2026-11-27-cpu-cap512 (its driver: 512-token caps, seed 0, one request at a time, modes
# interleaved in chunks of 5). Resumable like that run.
HERE=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=$HERE PORT=${PORT:-50553} MODES="target-only scot" \
  SCOT_MODE_ARGS="--accept-threshold ${THRESHOLD:-0.35}" ORDER="gsm8k:0 gsm8k:5 gsm8k:10 gsm8k:15" \
  exec "$HERE/../2026-11-27-cpu-cap512/run.sh"
