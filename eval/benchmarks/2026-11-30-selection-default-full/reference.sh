#!/bin/bash
# reference/: the 2026-11-27 target-only lines of every problem this run answered (the script of
# ../2026-11-29-selection-default-4of5, run on this folder).
HERE=$(cd "$(dirname "$0")" && pwd)
RUN_DIR=$HERE exec "$HERE/../2026-11-29-selection-default-4of5/reference.sh"
