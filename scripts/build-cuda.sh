#!/usr/bin/env bash
# Compiles scot's GPU code without a GPU, so it cannot rot unseen (issue 6): the `cuda` + `nccl` features of the
# binaries a GPU machine runs (target-node, draft-node, the engine's examples: bench_engine, bench_tp,
# random_gguf) in release, then clippy -D warnings on those crates with the same features.
#
# The CUDA 13.0 compiler, headers and NCCL come from PyPI wheels (scripts/install-cuda-build-deps.sh says why 13.0
# and how the driver/cuBLAS link stubs are made). The build uses its own target dir, outside the repo, so it
# never invalidates the CPU artifacts in target/ and survives fresh clones (CI): only changed crates rebuild.
#
# Usage: scripts/build-cuda.sh [--no-clippy]
#   SCOT_CUDA_TARGET_DIR  target dir (default ~/.cache/scot/target-cuda)
#   CUDA_COMPUTE_CAP      candle-kernels' compute capability (default 80: PTX for A100 that JITs on H100/H200)
# The binaries land in $SCOT_CUDA_TARGET_DIR/release/{target-node,draft-node} and .../release/examples/.
# On the GPU machine they need the driver (>= 580, CUDA 13) and the CUDA 13 runtime libraries (libcudart.so.13,
# libcublas.so.13 (+ libcublasLt), libcurand.so.10, libnccl.so.2: the NEEDED entries), e.g. from PyTorch cu130 wheels.
set -euo pipefail
cd "$(dirname "$0")/.."

clippy=1
[ "${1:-}" = "--no-clippy" ] && clippy=0

eval "$(scripts/install-cuda-build-deps.sh --print-env)"
export CARGO_TARGET_DIR="${SCOT_CUDA_TARGET_DIR:-$HOME/.cache/scot/target-cuda}"
# candle-kernels' nvcc jobs (cudaforge): use both cores, not its default of half.
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"

features="scot-engine/cuda,scot-engine/nccl,scot-target-node/nccl,scot-draft-node/nccl"
start=$(date +%s)
echo "build-cuda: cargo build (target dir $CARGO_TARGET_DIR, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)" >&2
cargo build --release --locked -p scot-engine -p scot-target-node -p scot-draft-node --features "$features" \
  --bin target-node --bin draft-node --examples
built=$(date +%s)
echo "build-cuda: build took $((built - start)) s" >&2

if [ "$clippy" = 1 ]; then
  # Same packages and features as the build: a different selection resolves the build-dependencies' features
  # differently, which gives candle-kernels' build script a new hash and compiles every kernel again (~20 min).
  cargo clippy --release --locked -p scot-engine -p scot-target-node -p scot-draft-node --features "$features" \
    --all-targets -- -D warnings
  echo "build-cuda: clippy took $(($(date +%s) - built)) s" >&2
fi

out="$CARGO_TARGET_DIR/release"
ls -l "$out/target-node" "$out/draft-node" >&2
find "$out/examples" -maxdepth 1 -type f -executable ! -name '*-*' -exec ls -l {} + >&2
