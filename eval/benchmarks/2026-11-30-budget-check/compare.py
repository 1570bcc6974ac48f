#!/usr/bin/env python3
"""Compares this run's result lines with a reference run's, field by field (timings and ports aside)."""
import json, sys, pathlib

here = pathlib.Path(__file__).parent
reference = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else here / "../2026-11-29-structure-check")
FIELDS = ["path", "answer_text", "prediction", "correct", "chosen", "option_probs", "votes",
          "answer_tokens", "target_thinking_tokens", "target_tokens", "draft_tokens"]
DRAFT_FIELDS = ["text", "answer", "tokens", "finish"]

def lines(run):
    out = {}
    for line in (run / "results/gsm8k-scot.jsonl").read_text().splitlines():
        row = json.loads(line)
        out[row["id"]] = row
    return out

# A second argument: the run to check (default: this folder).
mine_dir = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else here
mine, theirs = lines(mine_dir), lines(reference)
different = 0
for pid, row in sorted(mine.items()):
    ref = theirs.get(pid)
    if ref is None:
        print(f"{pid}: not in the reference"); different += 1; continue
    diffs = [f for f in FIELDS if row.get(f) != ref.get(f)]
    for i, (d, r) in enumerate(zip(row.get("drafts", []), ref.get("drafts", []))):
        diffs += [f"drafts[{i}].{f}" for f in DRAFT_FIELDS if d.get(f) != r.get(f)]
    if len(row.get("drafts", [])) != len(ref.get("drafts", [])):
        diffs.append("drafts (count)")
    print(f"{pid}: {row['path']} correct={row['correct']} " + ("identical" if not diffs else "DIFFERS: " + ", ".join(diffs)))
    different += bool(diffs)
print(f"{len(mine)} problems, {different} different")
sys.exit(1 if different else 0)
