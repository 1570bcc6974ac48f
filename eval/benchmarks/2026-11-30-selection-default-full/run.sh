#!/bin/bash
# The coordinator's default (hybrid, 4 of 5 drafts agree, else the target thinks), live, scot alone on
# the rest of the issue's sets: GSM8K test 41-100 and MATH-500 21-50, two GSM8K chunks to one MATH-500
# chunk so a cut run covers both. Settings of ../2026-11-27-cpu-cap512 through its driver; accuracy
# against that run's stored target-only lines (./reference.sh copies them into reference/).
# BIN: binaries of one commit copied aside, so a rebuild in the tree cannot change them mid-run.
HERE=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=$HERE PORT=${PORT:-50558} MODES="scot" ORDER=" gsm8k:40 gsm8k:45 math500:20 gsm8k:50 gsm8k:55 math500:25 gsm8k:60 gsm8k:65 math500:30 gsm8k:70 gsm8k:75 math500:35 gsm8k:80 gsm8k:85 math500:40 gsm8k:90 gsm8k:95 math500:45" \
  exec "$HERE/../2026-11-27-cpu-cap512/run.sh"
