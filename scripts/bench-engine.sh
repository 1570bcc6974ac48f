#!/usr/bin/env bash
# Engine vs llama.cpp on the same GGUF files, prompt tokens and thread count, measured in the same run.
#
#   scripts/bench-engine.sh [model.gguf ...]
#
# Defaults to the draft and target models in ${SCOT_MODEL_DIR:-~/.cache/scot/models}. Environment:
#   THREADS (default 2)  PROMPT_TOKENS (512)  DECODE_TOKENS (64)  BATCH (5)  REPS (2)
#   LLAMA_VENV (default ~/.cache/scot/llama-venv: llama-cpp-python is installed there if missing)
#   OUT (default target/bench-engine: JSON results per model and side)
#   SKIP_BUILD=1 uses an already built target/release/examples/bench_engine
#   BASELINE=path/to/an/older/bench_engine also runs that build in every round (a before/after
#   comparison in the same run: columns "before" and "engine / before")
# Prints one markdown table (engine / llama.cpp ratios; batch-N vs batch-1; peak RSS vs budget).
set -euo pipefail

cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
PROMPT_TOKENS=${PROMPT_TOKENS:-512}
DECODE_TOKENS=${DECODE_TOKENS:-64}
BATCH=${BATCH:-5}
REPS=${REPS:-2}
LLAMA_VENV=${LLAMA_VENV:-$HOME/.cache/scot/llama-venv}
LLAMA_CPP_PYTHON_VERSION=0.3.36
OUT=${OUT:-target/bench-engine}
MODEL_DIR=${SCOT_MODEL_DIR:-$HOME/.cache/scot/models}
mkdir -p "$OUT"

if [ $# -gt 0 ]; then
  MODELS=("$@")
else
  MODELS=("$MODEL_DIR/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" "$MODEL_DIR/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
fi
for m in "${MODELS[@]}"; do
  [ -f "$m" ] || { echo "model $m is missing: run scripts/fetch-models.sh" >&2; exit 1; }
done

# llama.cpp through its Python binding, compiled for this CPU. AMX is off: llama.cpp's AMX kernels
# crash on multi-token batches on this machine (see DESIGN-NOTES.md).
if ! "$LLAMA_VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "installing llama-cpp-python $LLAMA_CPP_PYTHON_VERSION into $LLAMA_VENV (compiles llama.cpp, 10+ min)" >&2
  python3 -m venv "$LLAMA_VENV"
  "$LLAMA_VENV/bin/pip" install -q --upgrade pip cmake ninja
  PATH="$LLAMA_VENV/bin:$PATH" \
  CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    nice -n 10 "$LLAMA_VENV/bin/pip" install "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" numpy
fi

BENCH_ENGINE=target/release/examples/bench_engine
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -x "$BENCH_ENGINE" ]; then
  cargo build --release -p scot-engine --example bench_engine >&2
fi

# Engine and llama.cpp runs alternate (REPS rounds of one repetition each) so both sides see the same
# spread of machine load; every figure is the best round.
for m in "${MODELS[@]}"; do
  name=$(basename "$m" .gguf)
  for round in $(seq 1 "$REPS"); do
    echo "== $name round $round/$REPS (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    RAYON_NUM_THREADS=$THREADS "$BENCH_ENGINE" --model "$m" --prompt-tokens "$PROMPT_TOKENS" \
      --decode-tokens "$DECODE_TOKENS" --batch "$BATCH" --reps 1 \
      --prompt-out "$OUT/$name.prompt.json" > "$OUT/$name.engine.$round.json"
    if [ -n "${BASELINE:-}" ]; then
      RAYON_NUM_THREADS=$THREADS "$BASELINE" --model "$m" --prompt-tokens "$PROMPT_TOKENS" \
        --decode-tokens "$DECODE_TOKENS" --batch "$BATCH" --reps 1 > "$OUT/$name.baseline.$round.json"
    fi
    "$LLAMA_VENV/bin/python" scripts/bench_llamacpp.py --model "$m" --prompt-ids "$OUT/$name.prompt.json" \
      --threads "$THREADS" --decode-tokens "$DECODE_TOKENS" --batch "$BATCH" --reps 1 \
      > "$OUT/$name.llamacpp.$round.json"
  done
  [ -n "${BASELINE:-}" ] || rm -f "$OUT/$name".baseline.*.json "$OUT/$name".baseline.json
  python3 - "$OUT" "$name" "$REPS" <<'EOF2'
import json, sys
out, name, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
import os
sides = ["engine", "llamacpp"] + (["baseline"] if os.path.exists(f"{out}/{name}.baseline.1.json") else [])
for side in sides:
    rounds = [json.load(open(f"{out}/{name}.{side}.{r}.json")) for r in range(1, reps + 1)]
    merged = dict(rounds[0])
    for key in ("prefill", "decode_b1", "decode_batch"):
        runs = [x for r in rounds for x in r[f"{key}_runs"]]
        merged[f"{key}_runs"] = runs
        merged[f"{key}_tok_s"] = max(runs)
    merged["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in rounds)
    if side == "engine":
        merged["rss_within_budget"] = merged["peak_rss_bytes"] <= merged["rss_budget_bytes"]
    json.dump(merged, open(f"{out}/{name}.{side}.json", "w"))
EOF2
done

python3 - "$OUT" "$THREADS" "${MODELS[@]}" <<'EOF'
import json, os, sys
out, threads, models = sys.argv[1], sys.argv[2], sys.argv[3:]
before = all(os.path.exists(f"{out}/{os.path.basename(m)[:-5]}.baseline.json") for m in models)
extra = " before | engine / before |" if before else ""
print(f"\n| model | metric ({threads} threads) | engine | llama.cpp | engine / llama.cpp |{extra}")
print("|---|---|---:|---:|---:|" + ("---:|---:|" if before else ""))
for m in models:
    name = os.path.basename(m)[: -len(".gguf")]
    e = json.load(open(f"{out}/{name}.engine.json"))
    l = json.load(open(f"{out}/{name}.llamacpp.json"))
    o = json.load(open(f"{out}/{name}.baseline.json")) if before else None
    b = e["batch"]
    rows = [
        (f"prefill tok/s ({e['prompt_tokens']}-token prompt)", "prefill_tok_s"),
        ("decode tok/s, batch 1", "decode_b1_tok_s"),
        (f"decode tok/s, batch {b} (all sequences)", "decode_batch_tok_s"),
    ]
    for label, key in rows:
        tail = f" {o[key]:.1f} | {e[key] / o[key]:.2f}x |" if o else ""
        print(f"| {name} | {label} | {e[key]:.1f} | {l[key]:.1f} | {e[key] / l[key]:.2f}x |{tail}")
    scaling = lambda r: r["decode_batch_tok_s"] / r["decode_b1_tok_s"]
    tail = f" {scaling(o):.2f}x | |" if o else ""
    print(f"| {name} | batch {b} / batch 1 throughput | {scaling(e):.2f}x | {scaling(l):.2f}x | |{tail}")
    gib = 1 << 20
    tail = f" {o['peak_rss_bytes'] / gib:.0f} | {e['peak_rss_bytes'] / o['peak_rss_bytes']:.2f}x |" if o else ""
    print(f"| {name} | peak RSS MiB (budget: 1.2 x file + KV = {e['rss_budget_bytes'] / gib:.0f}) "
          f"| {e['peak_rss_bytes'] / gib:.0f} ({'within' if e['rss_within_budget'] else 'OVER'}) "
          f"| {l['peak_rss_bytes'] / gib:.0f} | {e['peak_rss_bytes'] / l['peak_rss_bytes']:.2f}x |{tail}")
EOF
