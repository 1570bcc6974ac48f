#!/bin/bash
# reference/: the target-only lines of ../2026-11-27-cpu-cap512 (same settings, seed 0) for every
# problem this run answered, to compare accuracy on the same problems.
# RUN_DIR: another run on these settings whose results/ to match (default: this folder).
HERE=$(cd "$(dirname "$0")" && pwd)
cd "${RUN_DIR:-$HERE}"
mkdir -p reference
STORED=$HERE/../2026-11-27-cpu-cap512/results python3 - <<'PY'
import json, os
for name in ["gsm8k", "math500"]:
    if not os.path.exists(f"results/{name}-scot.jsonl"):
        continue
    stored = {json.loads(l)["id"]: l for l in open(os.path.join(os.environ["STORED"], f"{name}-target-only.jsonl"))}
    ids = [json.loads(l)["id"] for l in open(f"results/{name}-scot.jsonl")]
    with open(f"reference/{name}-target-only.jsonl", "w") as out:
        out.writelines(stored[i] for i in ids)
    print(f"{name}: {len(ids)} reference lines")
PY
