#!/bin/bash
# reference/: the target-only lines of ../2026-11-27-cpu-cap512 (same settings, seed 0) for every
# problem this run answered in scot mode, so accuracy is compared on the same problems where step 2
# ran scot alone. Also checks that target-only's answers here are those stored there, line for line.
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE"
mkdir -p reference
python3 - <<'PY'
import json
for name in ["gsm8k", "math500"]:
    stored = {}
    for line in open(f"../2026-11-27-cpu-cap512/results/{name}-target-only.jsonl"):
        row = json.loads(line)
        stored[row["id"]] = line
    ids = [json.loads(l)["id"] for l in open(f"results/{name}-scot.jsonl")]
    with open(f"reference/{name}-target-only.jsonl", "w") as out:
        for i in ids:
            out.write(stored[i])
    here = [json.loads(l) for l in open(f"results/{name}-target-only.jsonl")]
    same = sum(json.loads(stored[r["id"]])["answer_text"] == r["answer_text"] for r in here)
    print(f"{name}: {len(ids)} reference lines; target-only rerun here: {same}/{len(here)} answers identical")
PY
