#!/bin/bash
# The coordinator's default selection (hybrid: a strict majority of the 5 drafts' answers, else the
# target thinks; no selection prior, no per-request policy) against target-only, live, on problems
# the tuning run (../2026-11-29-selection-tune) did not see. Settings of ../2026-11-27-cpu-cap512
# (512-token caps, answer 96, seed 0, one request at a time, modes interleaved in chunks of 5),
# through its driver; resumable.
#   1. target-only and scot on GSM8K test 1-20 and MATH-500 1-10 (the speed ratios);
#   2. scot alone on GSM8K 21-30 and MATH-500 11-15 (accuracy only): target-only's lines at these
#      settings are stored by ../2026-11-27-cpu-cap512 (./reference.sh copies them and checks the
#      rerun of step 1 against them), so accuracy is compared with those lines.
HERE=$(cd "$(dirname "$0")" && pwd)
DRIVER=$HERE/../2026-11-27-cpu-cap512/run.sh
export RUN_DIR=$HERE PORT=${PORT:-50555}
MODES="target-only scot" ORDER="gsm8k:0 gsm8k:5 gsm8k:10 gsm8k:15 math500:0 math500:5" "$DRIVER" || exit 1
MODES="scot" ORDER="gsm8k:20 gsm8k:25 math500:10" "$DRIVER"
