#!/usr/bin/env python3
"""Replays an accept threshold on a finished scot + target-only run (BENCHMARKS.md, "An accept threshold").

A problem whose accepted draft had a top option probability under t is charged the drafting and
selection it already spent plus the target-only time and verdict on the same problem. Uses the verdicts
stored in the result files. Usage: replay_threshold.py [RESULTS_DIR] (default: the quiet run's results).
"""
import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "../2026-11-27-cpu-cap512/results")
THRESHOLDS = [None, 0.25, 0.30, 0.35, 0.40, 0.50]


def load(path):
    return {r["id"]: r for r in map(json.loads, path.open()) if not r["error"]}


def auc(right, wrong):
    pairs = [(a > b) + 0.5 * (a == b) for a in right for b in wrong]
    return sum(pairs) / len(pairs) if pairs else float("nan")


print("| set | t | rejected | accuracy | mean s | r (e2e) |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
notes = []
for data_set in ["gsm8k", "math500"]:
    scot, target = (load(RESULTS / f"{data_set}-{m}.jsonl") for m in ["scot", "target-only"])
    ids = sorted(set(scot) & set(target))
    t_target = statistics.mean(target[i]["total_ms"] for i in ids) / 1e3
    for t in THRESHOLDS:
        correct, total_ms, rejected = 0, 0.0, 0
        for i in ids:
            s, r = scot[i], target[i]
            if t is not None and s["path"] == "draft_accepted" and max(s["option_probs"][:-1]) < t:
                rejected += 1
                correct += r["correct"]
                total_ms += s["draft_ms"] + s["select_ms"] + r["total_ms"]
            else:
                correct += s["correct"]
                total_ms += s["total_ms"]
        mean_s = total_ms / len(ids) / 1e3
        label = "off" if t is None else f"{t:.2f}"
        print(f"| {data_set} | {label} | {rejected} / {len(ids)} | {correct / len(ids):.0%} | {mean_s:.1f} | {t_target / mean_s:.2f} |")
    accepted = [scot[i] for i in ids if scot[i]["path"] == "draft_accepted"]
    top = lambda rows: [max(r["option_probs"][:-1]) for r in rows]
    right, wrong = top([r for r in accepted if r["correct"]]), top([r for r in accepted if not r["correct"]])
    notes.append(f"{data_set}: top option probability, right {statistics.mean(right):.3f} vs wrong "
                 f"{statistics.mean(wrong):.3f}, AUC {auc(right, wrong):.2f}")
print()
print("\n".join(notes))
