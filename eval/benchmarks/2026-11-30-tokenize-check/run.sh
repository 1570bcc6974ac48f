#!/bin/bash
# Copies same_ids.rs into node-support/tests for one run (serde_json as a dev-dependency), runs it,
# and puts both back. DATA: the evaluation data (default ../shared/data from the repository root).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../../.." && pwd); cd "$ROOT"
cp node-support/Cargo.toml /tmp/scot-ns-Cargo.toml
trap 'cp /tmp/scot-ns-Cargo.toml node-support/Cargo.toml; rm -f node-support/tests/same_ids.rs' EXIT
sed -i '/^\[dev-dependencies\]/a serde_json.workspace = true' node-support/Cargo.toml
cp "$HERE/same_ids.rs" node-support/tests/same_ids.rs
(cd node-support && DATA=${DATA:-$ROOT/../shared/data} cargo test --release --test same_ids -- --nocapture 2>&1) | grep -E "checked|DIFF|test result"
