#!/usr/bin/env bash
# Installs what compiling scot's `cuda` + `nccl` features needs, without a GPU and without a system CUDA:
# the CUDA compiler, headers and NCCL from pinned PyPI wheels (`pip download --no-deps` + unzip), merged into
# one CUDA root under ~/.cache/scot/cuda (outside the repo, kept between runs: a second run only verifies).
#
# Why CUDA 13.0: it is the oldest CUDA whose PyPI wheels carry the `nvcc` driver itself (nvidia-cuda-nvcc);
# every nvidia-cuda-nvcc-cu12 wheel (12.0 .. 12.9) ships only ptxas + libnvvm, which cannot compile candle's
# kernels. cudarc 0.19.10 (candle 0.11.1) supports CUDA 13.0 .. 13.4; 13.0 needs the oldest driver (>= 580).
#
# Link-time libraries: candle makes cudarc link (not dlopen) libcuda, libcublas, libcublasLt, libcurand, libnvrtc
# (and libnccl with `nccl`); candle-kernels links libcudart. cudart and NCCL come from their (small / needed)
# wheels; the driver and the math libraries would be ~1 GB of wheels, so this script builds link stubs for them
# instead: empty functions named after every symbol cudarc's bindings declare, with the real sonames
# (libcuda.so.1, libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13) - the same thing
# NVIDIA's own lib64/stubs do. The binary then loads the real libraries on the GPU machine.
#
# Usage: scripts/install-cuda-build-deps.sh [--print-env]
#   --print-env  print only the `export` lines (for `eval "$(scripts/install-cuda-build-deps.sh --print-env)"`)
set -euo pipefail

CUDA_MM=13.0
NVCC_VERSION=13.0.88        # nvidia-cuda-nvcc: nvcc, ptxas, fatbinary, cudafe++, nvlink
NVVM_VERSION=13.0.88        # nvidia-nvvm: cicc, libnvvm, libdevice
CRT_VERSION=13.0.88         # nvidia-cuda-crt: include/crt (host_config.h, mma.h, ...)
RUNTIME_VERSION=13.0.96     # nvidia-cuda-runtime: cuda_runtime.h, cuda.h, cuda_fp16/bf16/fp8.h, libcudart.so.13
CCCL_VERSION=13.0.85        # nvidia-cuda-cccl: cub, thrust, libcu++ (candle's sort/scan kernels include them)
NCCL_VERSION=2.27.7         # nvidia-nccl-cu13: nccl.h, libnccl.so.2 (the version PyTorch's cu130 wheels pair)

# Compute capability for candle-kernels (no GPU here to ask). 80 = A100: its PTX (compute_80) is JIT-compiled
# by the driver on every newer GPU (H100/H200 = 90), so one build runs on A100, H100 and H200. The kernels that
# candle-kernels compiles into a static library (the quantized mmq/mmvq matmuls) are SASS, which does NOT run
# across major versions; the nvcc wrapper below therefore also embeds sm_90 SASS and compute_80 PTX into them.
CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"

CACHE="${SCOT_CUDA_CACHE:-$HOME/.cache/scot/cuda}"
ROOT="$CACHE/cuda-$CUDA_MM"
WHEELS="$CACHE/wheels"
STAMP="$ROOT/.scot-installed"
STAMP_TEXT="nvcc=$NVCC_VERSION nvvm=$NVVM_VERSION crt=$CRT_VERSION runtime=$RUNTIME_VERSION cccl=$CCCL_VERSION nccl=$NCCL_VERSION stubs=1 wrapper=1"

print_env() {
  cat <<EOF
export CUDA_HOME="$ROOT"
export CUDA_ROOT="$ROOT"
export PATH="$ROOT/bin:\$PATH"
export NVCC="$ROOT/bin/nvcc-scot"
export CUDA_COMPUTE_CAP="$CUDA_COMPUTE_CAP"
EOF
}

log() { [ "${QUIET:-0}" = 1 ] || echo "install-cuda-build-deps: $*" >&2; }

verify() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ] || return 1
  local f
  for f in bin/nvcc bin/nvcc-scot bin/ptxas bin/fatbinary bin/cudafe++ nvvm/bin/cicc include/cuda_runtime.h \
    include/crt/host_config.h include/cccl/cub/cub.cuh include/nccl.h lib/libcudart.so lib/libnccl.so \
    lib/stubs/libcuda.so lib/stubs/libcublas.so lib/stubs/libcublasLt.so lib/stubs/libcurand.so \
    lib/stubs/libnvrtc.so; do
    [ -e "$ROOT/$f" ] || { log "missing $ROOT/$f"; return 1; }
  done
  "$ROOT/bin/nvcc" --version | grep -q "release $CUDA_MM," || { log "nvcc is not CUDA $CUDA_MM"; return 1; }
}

# The cudarc sources whose bindings name the symbols to stub (the registry copy cargo already fetched).
find_cudarc() {
  local d
  for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10; do
    [ -d "$d/src" ] && { echo "$d"; return 0; }
  done
  return 1
}

make_stub() { # make_stub <cudarc module> <file name> <soname>
  local module="$1" file="$2" soname="$3" src
  src="$(mktemp --suffix=.c)"
  grep -A1 'extern "C" {' "$CUDARC/src/$module/sys/mod.rs" | grep -oP '^\s*(pub )?fn \K\w+' | sort -u \
    | sed 's/.*/void &(void) {}/' >"$src"
  [ -s "$src" ] || { echo "no symbols found for $module in $CUDARC" >&2; exit 1; }
  cc -shared -fPIC -o "$ROOT/lib/stubs/$file" -Wl,-soname,"$soname" "$src"
  rm -f "$src"
}

install() {
  command -v python3 >/dev/null || { echo "python3 with pip is needed" >&2; exit 1; }
  command -v unzip >/dev/null || { echo "unzip is needed (apt-get install unzip)" >&2; exit 1; }
  command -v cc >/dev/null || { echo "a C compiler is needed (apt-get install gcc)" >&2; exit 1; }
  CUDARC="$(find_cudarc)" || {
    log "fetching crates (cudarc's bindings name the stub symbols)"
    (cd "$(dirname "$0")/.." && cargo fetch --locked >/dev/null)
    CUDARC="$(find_cudarc)" || { echo "cudarc-0.19.10 not in the cargo registry" >&2; exit 1; }
  }
  mkdir -p "$WHEELS"
  log "downloading pinned wheels into $WHEELS"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check --dest "$WHEELS" \
    --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 \
    "nvidia-cuda-nvcc==$NVCC_VERSION" "nvidia-nvvm==$NVVM_VERSION" "nvidia-cuda-crt==$CRT_VERSION" \
    "nvidia-cuda-runtime==$RUNTIME_VERSION" "nvidia-cuda-cccl==$CCCL_VERSION" "nvidia-nccl-cu13==$NCCL_VERSION"

  rm -rf "$ROOT.tmp"
  mkdir -p "$ROOT.tmp/unpack"
  local w
  for w in \
    "$WHEELS"/nvidia_cuda_nvcc-"$NVCC_VERSION"-*.whl "$WHEELS"/nvidia_nvvm-"$NVVM_VERSION"-*.whl \
    "$WHEELS"/nvidia_cuda_crt-"$CRT_VERSION"-*.whl "$WHEELS"/nvidia_cuda_runtime-"$RUNTIME_VERSION"-*.whl \
    "$WHEELS"/nvidia_cuda_cccl-"$CCCL_VERSION"-*.whl "$WHEELS"/nvidia_nccl_cu13-"$NCCL_VERSION"-*.whl; do
    [ -f "$w" ] || { echo "wheel missing after download: $w" >&2; exit 1; }
    unzip -q -o "$w" 'nvidia/*' -d "$ROOT.tmp/unpack"
  done
  rm -rf "$ROOT"
  mv "$ROOT.tmp/unpack/nvidia/cu13" "$ROOT"
  cp -a "$ROOT.tmp/unpack/nvidia/nccl/include/." "$ROOT/include/"
  cp -a "$ROOT.tmp/unpack/nvidia/nccl/lib/." "$ROOT/lib/"
  rm -rf "$ROOT.tmp"
  find "$ROOT" -name '__init__.py' -delete

  # nvcc.profile looks for $(TOP)/targets/x86_64-linux/{include,lib}; the wheels put them at the top.
  mkdir -p "$ROOT/targets" "$ROOT/lib/stubs"
  ln -sfn .. "$ROOT/targets/x86_64-linux"
  ln -sfn lib "$ROOT/lib64"
  ln -sfn libcudart.so.13 "$ROOT/lib/libcudart.so"
  ln -sfn libnccl.so.2 "$ROOT/lib/libnccl.so"

  make_stub driver libcuda.so libcuda.so.1
  make_stub cublas libcublas.so libcublas.so.13
  make_stub cublaslt libcublasLt.so libcublasLt.so.13
  make_stub curand libcurand.so libcurand.so.10
  make_stub nvrtc libnvrtc.so libnvrtc.so.13

  # nvcc wrapper that cudaforge (candle-kernels' build) runs through $NVCC. Object compiles (`-c`, the static
  # quantized-matmul library) also get sm_90 SASS and compute_80 PTX, so that library runs on A100 (sm_80
  # SASS), H100/H200 (sm_90 SASS) and anything newer (PTX JIT). PTX-only compiles pass through unchanged.
  cat >"$ROOT/bin/nvcc-scot" <<'EOF'
#!/bin/sh
here="$(dirname "$0")"
for a in "$@"; do
  if [ "$a" = "-c" ]; then
    exec "$here/nvcc" "$@" ${SCOT_NVCC_EXTRA_GENCODE--gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=compute_80}
  fi
done
exec "$here/nvcc" "$@"
EOF
  chmod +x "$ROOT/bin/nvcc-scot"
  echo "$STAMP_TEXT" >"$STAMP"
}

if verify; then
  log "CUDA $CUDA_MM build deps present in $ROOT (verified)"
else
  install
  verify || { echo "install-cuda-build-deps: verification failed after install" >&2; exit 1; }
  log "installed CUDA $CUDA_MM build deps into $ROOT ($(du -sh "$ROOT" | cut -f1))"
fi

if [ "${1:-}" = "--print-env" ]; then
  print_env
else
  log "environment for the cuda build:"
  print_env >&2
fi
