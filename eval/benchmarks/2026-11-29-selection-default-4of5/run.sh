#!/bin/bash
# The coordinator's default after ../2026-11-29-selection-default (hybrid, 4 of 5 drafts agree, else
# the target thinks), live, scot alone on GSM8K test 31-40 and MATH-500 16-20: problems neither
# selection run saw. Settings of ../2026-11-27-cpu-cap512 through its driver; accuracy against that
# run's stored target-only lines (./reference.sh copies them into reference/).
HERE=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=$HERE PORT=${PORT:-50556} MODES="scot" ORDER="gsm8k:30 gsm8k:35 math500:15" \
  exec "$HERE/../2026-11-27-cpu-cap512/run.sh"
