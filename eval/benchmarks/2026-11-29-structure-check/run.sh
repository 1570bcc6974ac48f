#!/bin/bash
# After issue 13's restructuring (and issue 14's first pieces): the same 5 problems, settings, seed and
# default policy as ../2026-11-29-selection-default-4of5 (GSM8K test 31-35, scot only), live, to compare
# line by line with that run (drafts' answers, path, prediction, correctness): the drafts are seeded and
# the target is greedy, so an unchanged request path gives the same answers.
HERE=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=$HERE PORT=${PORT:-50557} MODES="scot" ORDER="gsm8k:30" \
  exec "$HERE/../2026-11-27-cpu-cap512/run.sh"
