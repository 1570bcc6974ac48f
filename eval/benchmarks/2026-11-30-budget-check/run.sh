#!/bin/bash
# After issue 14's KV budget, load reports, admission-then-prepare and bounded job streams: the same 5
# problems, settings, seed and default policy as ../2026-11-29-structure-check (GSM8K test 31-35, scot
# only), live, compared line by line with it (compare.py): the drafts are seeded and the target is
# greedy, so an unchanged answer path gives the same answers.
HERE=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=$HERE PORT=${PORT:-50559} MODES="scot" ORDER="gsm8k:30" \
  exec "$HERE/../2026-11-27-cpu-cap512/run.sh"
