#!/bin/bash
# Same answers after this session's coordinator changes (draft-room fallback, merging event queue,
# drain order): GSM8K test 41-45 in scot mode with the binaries of the tree (commit in README), the
# settings of ../2026-11-27-cpu-cap512, compared line by line with ../2026-11-30-selection-default-full
# (binaries of 3029fdc) by ../2026-11-30-budget-check/compare.py.
HERE=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=$HERE PORT=${PORT:-50559} MODES="scot" ORDER="gsm8k:40" \
  exec "$HERE/../2026-11-27-cpu-cap512/run.sh"
