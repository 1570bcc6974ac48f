//! One-off check (not part of the test suite; see README.md): every prompt the nodes build from the
//! data sets and from the stored drafts tokenizes to the same ids with the problem and drafts marked
//! untrusted as with the plain encode, on the default tokenizer (Qwen2.5-Coder).
#[path = "shared/models.rs"]
mod models;

#[test]
fn same_ids() {
    let node = models::model_args("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 32768).load().unwrap();
    let prompts = node.prompts("", "").unwrap();
    let layout = prompts.layout();
    let tok = node.model.tokenizer();
    let (mut checked, mut differ) = (0, 0);
    let mut check = |p: scot_templates::PromptText| {
        let a = tok.encode_with_untrusted(p.text(), p.untrusted()).unwrap();
        let b = tok.encode(p.text(), false).unwrap();
        checked += 1;
        if a != b { differ += 1; eprintln!("DIFF {:?}", &p.text()[..200.min(p.text().len())]); }
    };
    let data = std::env::var("DATA").unwrap_or("../shared/data".into());
    for f in ["gsm8k","math500","college_math","gaokao2023en","olympiadbench","math_prealgebra500"] {
        for line in std::fs::read_to_string(format!("{data}/{f}.jsonl")).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let q = v["problem"].as_str().unwrap();
            check(layout.draft_prompt(q).unwrap());
            check(layout.reasoning_prompt(q).unwrap());
        }
    }
    for entry in jsonl_files(std::path::Path::new("../eval/benchmarks")) {
        for line in std::fs::read_to_string(&entry).unwrap().lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let Some(drafts) = v["drafts"].as_array() else { continue };
            let texts: Vec<String> = drafts.iter().filter_map(|d| d["text"].as_str().map(String::from)).collect();
            if texts.is_empty() { continue; }
            let q = v["problem"].as_str().unwrap_or("Q");
            check(layout.select_prompt(q, &texts).unwrap());
            check(layout.answer_after_draft(q, &texts[0]).unwrap());
        }
    }
    eprintln!("checked {checked} prompts, {differ} differ");
    assert_eq!(differ, 0);
}

fn jsonl_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(jsonl_files(&p)); }
        else if p.extension().is_some_and(|x| x == "jsonl") { out.push(p); }
    }
    out
}
