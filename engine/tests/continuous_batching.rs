//! Continuous batching: sessions and drafting batches running at once on one model share its
//! decoding steps (the engine loop batches them, each sequence at its own position), and each gets
//! exactly the output it gets alone, bit for bit; one request's bad input fails only that request.

mod common;

use std::sync::Barrier;

use common::*;
use scot_engine::{
    CancelToken, EngineError, Model, SamplingParams, SequenceOutput, StepStats, StopCriteria,
};

const MAX_NEW: usize = 40;

/// One request of the mix: a single session, or a drafting batch of several sequences.
#[derive(Clone)]
enum Request {
    Session {
        prompt: Vec<u32>,
        sampling: SamplingParams,
    },
    Drafts {
        prompt: Vec<u32>,
        sampling: Vec<SamplingParams>,
    },
}

fn stop() -> StopCriteria {
    StopCriteria {
        max_new_tokens: MAX_NEW,
        stop_strings: Vec::new(),
        stop_at_eos: true,
    }
}

fn run(model: &Model, request: &Request) -> Vec<SequenceOutput> {
    let cancel = CancelToken::new();
    match request {
        Request::Session { prompt, sampling } => {
            let mut session = model.session().unwrap();
            session.extend(prompt).unwrap();
            vec![session
                .generate(sampling, &stop(), &mut |_| {}, &cancel)
                .unwrap()]
        }
        Request::Drafts { prompt, sampling } => model
            .generate_batch(prompt, sampling, &stop(), &mut |_| {}, &cancel)
            .unwrap(),
    }
}

fn delta(after: StepStats, before: StepStats) -> StepStats {
    StepStats {
        decode_batches: after.decode_batches - before.decode_batches,
        decode_rows: after.decode_rows - before.decode_rows,
        max_decode_rows: after.max_decode_rows,
        other_passes: after.other_passes - before.other_passes,
    }
}

#[test]
fn concurrent_requests_batch_together_and_match_their_runs_alone() {
    let _serial = serial();
    let model = load(DRAFT);
    let encode = |q: &str| model.tokenizer().encode(&chatml(q), false).unwrap();
    // Prompts of different lengths, so the sequences sit at different positions in every batch;
    // one is over a prefill chunk (512 tokens), so its prefill interleaves with the others' steps.
    let long = format!(
        "{} What is the sum of the first ten primes?",
        "Numbers are fun to add up. ".repeat(90)
    );
    let requests = [
        Request::Session {
            prompt: encode("What is 17 * 23?"),
            sampling: SamplingParams::greedy(),
        },
        Request::Session {
            prompt: encode("Name three prime numbers larger than one hundred and explain why."),
            sampling: SamplingParams::with_temperature(0.6, 7),
        },
        Request::Drafts {
            prompt: encode("A train travels 60 km in 45 minutes. What is its speed in km/h?"),
            sampling: (0..3)
                .map(|i| SamplingParams::with_temperature(0.6, 100 + i))
                .collect(),
        },
        Request::Session {
            prompt: encode(&long),
            sampling: SamplingParams::greedy(),
        },
    ];
    assert!(
        matches!(&requests[3], Request::Session { prompt, .. } if prompt.len() > 512),
        "the long prompt takes more than one prefill chunk"
    );

    let alone: Vec<Vec<SequenceOutput>> = requests.iter().map(|r| run(&model, r)).collect();
    let alone_stats = model.step_stats();

    let barrier = Barrier::new(requests.len());
    let together: Vec<Vec<SequenceOutput>> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|r| {
                let (model, barrier) = (&model, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    run(model, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stats = delta(model.step_stats(), alone_stats);

    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a.len(), t.len());
        for (a, t) in a.iter().zip(t) {
            assert_eq!(
                a.tokens, t.tokens,
                "request {i}: tokens differ when batched"
            );
            assert_eq!(a.text, t.text, "request {i}");
            assert_eq!(a.finish_reason, t.finish_reason, "request {i}");
        }
    }
    // Six sequences decoding: alone they took one row per step (three for the drafts); together
    // the steps are shared.
    let rows_per_batch = stats.decode_rows as f64 / stats.decode_batches as f64;
    assert!(
        stats.max_decode_rows >= 5 && rows_per_batch > 2.0,
        "the requests did not share decoding steps: {stats:?}"
    );
    assert!(
        stats.other_passes >= 4,
        "prefills run between steps: {stats:?}"
    );
}

#[test]
fn a_bad_request_fails_alone_while_others_decode() {
    let _serial = serial();
    let model = load(SMOL);
    let prompt = model
        .tokenizer()
        .encode(&chatml("Count to ten."), false)
        .unwrap();
    let good = Request::Session {
        prompt,
        sampling: SamplingParams::greedy(),
    };
    let expected = run(&model, &good);
    let vocab = model.info().vocab_size as u32;
    let barrier = Barrier::new(2);
    let (output, refusals) = std::thread::scope(|scope| {
        let decoding = scope.spawn(|| {
            barrier.wait();
            run(&model, &good)
        });
        let bad = scope.spawn(|| {
            barrier.wait();
            let mut session = model.session().unwrap();
            session.extend(&[1, 2, 3]).unwrap();
            // One token at a time, as a decoding step would come: refused, alone, every time.
            (0..20)
                .map(|_| session.extend(&[vocab + 5]).unwrap_err())
                .collect::<Vec<_>>()
        });
        (decoding.join().unwrap(), bad.join().unwrap())
    });
    assert_eq!(output[0].tokens, expected[0].tokens);
    for error in refusals {
        assert!(
            matches!(&error, EngineError::InvalidRequest(m) if m.contains("outside the vocabulary")),
            "{error}"
        );
    }
}
