#!/bin/bash
# Issue 12: the default selection (hybrid, 4 of 5 agree, else the target thinks) on sets it was not
# tuned on: the first 30 problems of GaoKao 2023 (en), CollegeMath and OlympiadBench, target-only and
# scot interleaved in chunks of 5 (one chunk of each set in turn, so a cut run covers all three).
# Settings of ../2026-11-27-cpu-cap512 through its driver (caps 512/512/96, seed 0, one request at a
# time). BIN: binaries of one commit copied aside; UP_ARGS=--plaintext because the driver's
# `scot eval` calls carry no client certificate (`scot up` runs mTLS by default since b9b2f70).
HERE=$(cd "$(dirname "$0")" && pwd)
ORDER=""
for off in 0 5 10 15 20 25; do
  ORDER="$ORDER gaokao2023en:$off college_math:$off olympiadbench:$off"
done
RUN_DIR=$HERE PORT=${PORT:-50559} MODES="target-only scot" UP_ARGS="--plaintext" ORDER="$ORDER" \
  exec "$HERE/../2026-11-27-cpu-cap512/run.sh"
