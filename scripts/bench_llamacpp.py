#!/usr/bin/env python3
"""llama.cpp side of the engine benchmark (see scripts/bench-engine.sh).

Runs llama.cpp (through llama-cpp-python's low-level C bindings) on the same GGUF file, the same prompt
token ids (written by the engine's bench_engine example) and the same thread count, and measures:
  - prefill tokens/s: the whole prompt in one llama_decode call (n_batch = n_ubatch >= prompt length);
  - batch-1 decode tokens/s: greedy, one token per llama_decode, `decode_tokens` forward passes, from a
    copy of the prefilled prompt's cache;
  - batch-N decode throughput: the prompt is decoded once for sequences 0..N-1 (one batch whose tokens
    carry all N sequence ids, as llama.cpp's `batched` example does, unified KV cache), then every step
    decodes one token per sequence in a single llama_decode; throughput = N * steps / decode time.
Prints one JSON object on stdout. Best of --reps for each figure, as the engine side does.
"""
import argparse
import ctypes
import json
import os
import resource
import sys
import time

import numpy as np
import llama_cpp as L


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--prompt-ids", required=True, help="JSON list of token ids")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--reps", type=int, default=2)
    return p.parse_args()


class Runner:
    def __init__(self, model_path, threads, n_ctx, n_batch, n_seq):
        L.llama_backend_init()
        # Silence llama.cpp's own logging (errors from this script still reach stderr).
        self._log_cb = L.llama_log_callback(lambda level, text, user_data: None)
        L.llama_log_set(self._log_cb, ctypes.c_void_p(0))
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        mp.use_mmap = True
        self.model = L.llama_model_load_from_file(model_path.encode(), mp)
        if not self.model:
            raise SystemExit(f"llama.cpp could not load {model_path}")
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = n_seq
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.kv_unified = True
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise SystemExit("llama.cpp could not create a context")
        self.mem = L.llama_get_memory(self.ctx)
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.batch = L.llama_batch_init(n_batch, 0, n_seq)

    def clear(self):
        L.llama_memory_clear(self.mem, True)

    def decode(self, entries):
        """entries: list of (token, pos, seq_ids, want_logits)."""
        b = self.batch
        b.n_tokens = len(entries)
        for i, (tok, pos, seqs, logits) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = len(seqs)
            for j, s in enumerate(seqs):
                b.seq_id[i][j] = s
            b.logits[i] = 1 if logits else 0
        rc = L.llama_decode(self.ctx, b)
        if rc != 0:
            raise SystemExit(f"llama_decode failed: {rc}")

    def argmax(self, i):
        ptr = L.llama_get_logits_ith(self.ctx, i)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))))

    def prefill(self, prompt, seqs):
        self.decode([(t, p, seqs, p == len(prompt) - 1) for p, t in enumerate(prompt)])
        L.llama_synchronize(self.ctx)


def main():
    a = parse_args()
    prompt = json.load(open(a.prompt_ids))
    n = a.decode_tokens
    # Unified KV cache: the prompt's cells are shared by all sequences, each adds its own n tokens.
    n_ctx = len(prompt) + a.batch * (n + 8) + 64
    r = Runner(a.model, a.threads, n_ctx, max(len(prompt), a.batch), a.batch)

    # Warm-up (weight repacking, page-in), not timed.
    r.prefill(prompt[:32], [0])
    r.decode([(r.argmax(-1), 32, [0], True)])
    r.clear()

    prefill_runs = []
    for _ in range(a.reps):
        r.clear()
        t = time.perf_counter()
        r.prefill(prompt, [0])
        prefill_runs.append(len(prompt) / (time.perf_counter() - t))
    print(f"[llama.cpp] prefill tok/s {[round(x, 1) for x in prefill_runs]}", file=sys.stderr)

    # Every repetition decodes on sequence 1, a copy of the prompt's cache (sequence 0 stays prefilled),
    # as the engine side decodes from forks of one prefilled session.
    decode_runs = []
    first = r.argmax(-1)
    for _ in range(a.reps):
        L.llama_memory_seq_rm(r.mem, 1, -1, -1)
        L.llama_memory_seq_cp(r.mem, 0, 1, -1, -1)
        tok = first
        t = time.perf_counter()
        for i in range(n):
            r.decode([(tok, len(prompt) + i, [1], True)])
            tok = r.argmax(0)
        decode_runs.append(n / (time.perf_counter() - t))
    print(f"[llama.cpp] decode b1 tok/s {[round(x, 1) for x in decode_runs]}", file=sys.stderr)

    seqs = list(range(a.batch))
    batch_runs = []
    for _ in range(a.reps):
        r.clear()
        r.prefill(prompt, seqs)
        first = r.argmax(-1)
        toks = [first] * a.batch
        t = time.perf_counter()
        for i in range(n):
            r.decode([(toks[s], len(prompt) + i, [s], True) for s in seqs])
            toks = [r.argmax(s) for s in seqs]
        batch_runs.append(a.batch * n / (time.perf_counter() - t))
    print(f"[llama.cpp] decode b{a.batch} tok/s (all sequences) {[round(x, 1) for x in batch_runs]}", file=sys.stderr)

    print(json.dumps({
        "side": "llama.cpp",
        "llama_cpp_python": L.__version__ if hasattr(L, "__version__") else None,
        "model": os.path.basename(a.model),
        "threads": a.threads,
        "prompt_tokens": len(prompt),
        "decode_tokens": n,
        "batch": a.batch,
        "batch_mode": "one llama_decode per step with one token per sequence, unified KV cache, shared prompt",
        "prefill_tok_s": max(prefill_runs),
        "decode_b1_tok_s": max(decode_runs),
        "decode_batch_tok_s": max(batch_runs),
        "prefill_runs": prefill_runs,
        "decode_b1_runs": decode_runs,
        "decode_batch_runs": batch_runs,
        # ru_maxrss is in KiB on Linux
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


if __name__ == "__main__":
    main()
