//! Run-time LoRA on a tensor-parallel model: the adapter's B is cut by rows for column-parallel
//! layers (q, k, v, gate, up) and its A by columns for row-parallel ones (o, down), whose partial
//! products the ranks sum. On a GGUF whose tensors are all f32 (no quantized kernel to amplify
//! rounding), SmolLM2 at TP 3 with the adapter gives the unsharded logits with the adapter within
//! 1e-3 (f32 summation order only).

mod common;

use std::path::Path;

use common::gguf::{arch, last_logits, modules, write_adapter, write_f32_copy, Gguf, F32};
use common::{max_abs_diff, model_path, serial, SMOL};

const PROMPT: &[u32] = &[1, 504, 2365, 6354, 16438, 27003, 690, 260];

fn logits(path: &Path, adapter: Option<&Path>, tp: usize) -> Vec<f32> {
    last_logits(path, adapter, tp, PROMPT)
}

#[test]
fn tensor_parallel_run_time_lora_matches_unsharded() {
    let _serial = serial();
    let src = model_path(SMOL);
    let tmp = tempfile::tempdir().unwrap();
    let gguf = Gguf::open(&src);
    let last = gguf.uint(&format!("{}.block_count", arch(true))) - 1;
    let adapted = modules(&gguf, &[0, last]);
    let f32_copy = tmp.path().join("f32.gguf");
    write_f32_copy(&src, &adapted, false, true, F32::All, &f32_copy);
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &adapted);

    let whole = logits(&f32_copy, Some(&adapter), 1);
    let sharded = logits(&f32_copy, Some(&adapter), 3);
    let base = logits(&f32_copy, None, 1);
    let diff = max_abs_diff(&whole, &sharded);
    let effect = max_abs_diff(&base, &whole);
    eprintln!("TP 3 vs 1 with the adapter: {diff} (adapter effect {effect})");
    assert!(diff <= 1e-3, "sharded run-time LoRA differs by {diff}");
    assert!(effect > 0.1, "the adapter had no clear effect ({effect})");
}
