#!/usr/bin/env bash
# GPU tensor-parallel benchmark (issue 6): TP = 1 against the largest TP the machine's GPUs allow, on the real
# SHAPES of DeepSeek-R1-Distill-Qwen 1.5B / 7B / 32B with random Q4_K_M-like weights generated on the GPU
# machine itself (no downloads there). Two steps, because the GPU machine has no Rust toolchain and no network:
#
#   scripts/gpu-bench-tp.sh kit [KIT]   on the build machine: scripts/build-cuda.sh, then stage the CUDA-built
#                                       bench_tp + random_gguf and a tokenizer-only GGUF (~6 MB) in KIT
#                                       (default target/gpu-kit), compressed; prints the size to carry
#   scripts/gpu-bench-tp.sh run [KIT]   on the GPU machine: unpack, generate the models into $SCOT_BENCH_DATA,
#                                       run bench_tp for each, print one table (also $SCOT_BENCH_DATA/tp-table.md)
#
# Knobs (run): SHAPES ("1.5b 7b 32b"), PROMPT_TOKENS (512), DECODE_TOKENS (64), TP_MAX (default: GPU count),
# SCOT_BENCH_DATA (/tmp/scot-bench; the 32B file is ~20 GB, each model is deleted after its run unless
# KEEP_MODELS=1), BENCH_TIMEOUT per model in seconds (1800).
# The binaries need the NVIDIA driver >= 580 and the CUDA 13 runtime libraries (see build-cuda.sh); `run`
# looks for them in the Python environment's nvidia-* wheels (PyTorch cu130), /usr/local/cuda and ldconfig.
set -euo pipefail
cd "$(dirname "$0")/.."

cmd="${1:-}"
kit="${2:-target/gpu-kit}"
tokenizer_src="${SCOT_QWEN_GGUF:-${SCOT_MODEL_DIR:-$HOME/.cache/scot/models}/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}"

make_kit() {
  scripts/build-cuda.sh --no-clippy
  local rel="${SCOT_CUDA_TARGET_DIR:-$HOME/.cache/scot/target-cuda}/release/examples"
  [ -x "$rel/bench_tp" ] || { echo "gpu-bench-tp: $rel/bench_tp was not built (engine/examples/bench_tp.rs missing?)" >&2; exit 1; }
  [ -f "$tokenizer_src" ] || { echo "gpu-bench-tp: $tokenizer_src missing: run scripts/fetch-models.sh" >&2; exit 1; }
  # random_gguf needs no GPU: its CPU build is ~1 MB against ~75 MB with CUDA kernels linked in.
  cargo build --release --locked -p scot-engine --example random_gguf
  rm -rf "$kit" && mkdir -p "$kit"
  target/release/examples/random_gguf extract-tokenizer --from "$tokenizer_src" --out "$kit/qwen2-tokenizer.gguf"
  strip -o "$kit/random_gguf" target/release/examples/random_gguf
  # bench_tp: ~98 MB stripped, ~75 MB of it CUDA fatbins (sm_80 + sm_90 SASS, compute_80 PTX); xz -> ~21 MB.
  strip -o "$kit/bench_tp" "$rel/bench_tp"
  xz -T0 -6 "$kit/bench_tp"
  ls -l "$kit"
  echo "gpu-bench-tp: carry $kit ($(du -sb "$kit" | cut -f1) bytes; the limit is 64 MiB = 67108864)" >&2
}

# Directories that may hold the CUDA 13 runtime libraries, most specific first.
cuda_lib_dirs() {
  local py
  for py in python3 python; do
    command -v "$py" >/dev/null 2>&1 || continue
    "$py" - <<'EOF' 2>/dev/null || true
import glob, os, site, sys
roots = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path
seen = set()
for r in roots:
    for d in glob.glob(os.path.join(r, "nvidia", "*", "lib")) + glob.glob(os.path.join(r, "nvidia", "cu13", "lib")):
        if os.path.isdir(d) and d not in seen:
            seen.add(d)
            print(d)
EOF
    break
  done
  ls -d /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib 2>/dev/null || true
}

run_bench() {
  local data="${SCOT_BENCH_DATA:-/tmp/scot-bench}"
  local bin="$data/bin"
  mkdir -p "$data" "$bin"
  local b
  for b in bench_tp random_gguf; do
    if [ -f "$kit/$b.xz" ]; then xz -dc "$kit/$b.xz" >"$bin/$b"; elif [ -f "$kit/$b" ]; then cp "$kit/$b" "$bin/$b"; fi
    chmod +x "$bin/$b"
  done

  # Driver and libraries first: a clear message beats a loader error.
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  local driver
  driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 | cut -d. -f1 || true)"
  if [ -n "$driver" ] && [ "$driver" -lt 580 ]; then
    echo "gpu-bench-tp: driver $driver < 580: the binaries are built with CUDA 13.0 and cannot run here" >&2
    exit 1
  fi
  local dirs
  dirs="$(cuda_lib_dirs | paste -sd: -)"
  export LD_LIBRARY_PATH="${dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local missing
  missing="$(ldd "$bin/bench_tp" 2>/dev/null | awk '/not found/ {print $1}' || true)"
  if [ -n "$missing" ]; then
    echo "gpu-bench-tp: these CUDA 13 libraries are missing: $missing" >&2
    echo "  searched: ${LD_LIBRARY_PATH:-<none>}; install the CUDA 13 runtime (e.g. PyTorch cu130's nvidia-* wheels)" >&2
    exit 1
  fi

  local gpus="${TP_MAX:-}"
  [ -n "$gpus" ] || gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
  [ "${gpus:-0}" -ge 1 ] || { echo "gpu-bench-tp: no GPU found" >&2; exit 1; }
  local tps="1"
  [ "$gpus" -gt 1 ] && tps="1,$gpus"
  echo "gpu-bench-tp: TP in {$tps}, prompt ${PROMPT_TOKENS:-512} tokens, decode ${DECODE_TOKENS:-64} tokens" >&2

  local shape model need free
  for shape in ${SHAPES:-1.5b 7b 32b}; do
    model="$data/r1-distill-qwen-$shape-random-q4km.gguf"
    if [ ! -f "$model" ]; then
      need="$("$bin/random_gguf" sizes | awk -v s="$shape" '$1 == s {print int($2 + 2)}')"
      free="$(df -P -BG "$data" | awk 'NR == 2 {print int($4)}')"
      if [ -n "$need" ] && [ "$free" -lt "$need" ]; then
        echo "gpu-bench-tp: $shape needs ~${need} GB in $data, only ${free} GB free; skipped" >&2
        continue
      fi
      "$bin/random_gguf" generate --shape "$shape" --tokenizer "$kit/qwen2-tokenizer.gguf" --out "$model"
    fi
    echo "gpu-bench-tp: bench_tp $shape" >&2
    timeout "${BENCH_TIMEOUT:-1800}" "$bin/bench_tp" --model "$model" --tp "$tps" \
      --prompt-tokens "${PROMPT_TOKENS:-512}" --decode-tokens "${DECODE_TOKENS:-64}" --device cuda:0 \
      | tee "$data/bench_tp-$shape.out" || echo "gpu-bench-tp: bench_tp $shape failed (exit $?)" >&2
    [ "${KEEP_MODELS:-0}" = 1 ] || rm -f "$model"
  done

  # One table over all shapes: bench_tp prints a Markdown table per model (JSON objects are taken too);
  # other lines (the model/device header) are listed below it.
  python3 - "$data" ${SHAPES:-1.5b 7b 32b} <<'EOF' | tee "$data/tp-table.md"
import json, os, sys
data, shapes = sys.argv[1], sys.argv[2:]
header, rows, notes = None, [], []
for s in shapes:
    path = os.path.join(data, f"bench_tp-{s}.out")
    if not os.path.exists(path):
        continue
    for line in open(path):
        line = line.strip()
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= set(":-") for c in cells):
                continue  # separator
            if cells[0].replace(".", "").isdigit():
                rows.append([s] + cells)
            elif header is None:
                header = cells
            continue
        try:
            o = json.loads(line)
        except ValueError:
            if line:
                notes.append(f"{s}: {line}")
            continue
        if isinstance(o, dict):
            header = header or list(o)
            rows.append([s] + [str(o.get(k, "")) for k in header])
if header:
    print("| shape | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 1) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
print()
for n in notes:
    print(n)
EOF
}

case "$cmd" in
  kit) make_kit ;;
  run) run_bench ;;
  *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac
