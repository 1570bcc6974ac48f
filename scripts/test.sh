#!/usr/bin/env bash
# scot's test command (the README's, and what CI runs): installs what the tests need, fetches the
# default models into the cache (outside the repo), then runs every test in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
scripts/install-py-test-deps.sh >/dev/null
scripts/fetch-models.sh >/dev/null
cargo test --release --workspace --no-fail-fast
scripts/check-k8s.sh
