//! The engine against llama.cpp on the real model in every common GGUF
//! type, each file written by llama.cpp's own `llama-quantize`: 12 prompts
//! per type, two of them about 1,000 and 3,000 tokens long. Every type
//! must have all 32 greedy tokens equal llama.cpp's on at least 11 of the
//! 12 prompts, the first 8 on every prompt, and last-position logits at
//! cosine 0.999 or more. The K-quant files depend on taking llama.cpp's
//! order for each batch size (`kquants::portable`): its tiled matmul for
//! Q5_K/Q6_K from 8 rows on, its repacked Q4_K `gemm` for whole fours.

mod support;

use servebench_engine::Engine;
use support::greedy::{self, GREEDY_TOKENS};
use support::prompts::{essay, CHAT, PLAIN};

/// What a type must reach.
struct Bar {
    /// Prompts (of 12) whose 32 greedy tokens all equal llama.cpp's.
    all_equal: usize,
    /// Leading greedy tokens that must agree on every prompt.
    first: usize,
    /// Lowest last-position logits cosine allowed.
    cosine: f64,
}

/// What every type reaches.
const GOAL: Bar = Bar {
    all_equal: 11,
    first: 8,
    cosine: 0.999,
};

fn parity(kind: &str, bar: Bar) {
    let Some(path) = support::quantized_model(kind) else {
        return;
    };
    let engine = Engine::load(&path).unwrap();
    let short = PLAIN
        .iter()
        .step_by(2)
        .map(|p| engine.encode_prompt(p, false).unwrap())
        .chain(
            CHAT.iter()
                .take(5)
                .map(|p| engine.encode_prompt(p, true).unwrap()),
        );
    let prompts: Vec<Vec<u32>> = short
        .chain(
            [1_000, 3_000]
                .into_iter()
                .map(|n| engine.encode_prompt(&essay(n), false).unwrap()),
        )
        .collect();
    assert_eq!(prompts.len(), 12);
    let Some(results) = greedy::against_llamacpp(&engine, &path, &prompts, 4096) else {
        return;
    };
    let all_equal = results.iter().filter(|r| r.all_equal()).count();
    eprintln!(
        "{kind}: {all_equal} of {} prompts equal llama.cpp for all {GREEDY_TOKENS} greedy tokens",
        results.len()
    );
    let report: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.all_equal())
        .map(|(i, r)| r.describe(i))
        .collect();
    assert!(
        all_equal >= bar.all_equal,
        "{kind}: only {all_equal} of {} prompts equal llama.cpp for {GREEDY_TOKENS} tokens\n{}",
        results.len(),
        report.join("\n")
    );
    assert!(
        results.iter().all(|r| r.first_equal(bar.first)),
        "{kind}: the first {} greedy tokens differ\n{}",
        bar.first,
        report.join("\n")
    );
    let (worst_at, worst) = results
        .iter()
        .map(|r| r.cosine)
        .enumerate()
        .fold((0, 1.0), |a, b| if b.1 < a.1 { b } else { a });
    eprintln!("{kind}: lowest last-position cosine {worst:.6} (prompt {worst_at})");
    assert!(
        worst >= bar.cosine,
        "{kind}: prompt {worst_at}'s last-position cosine {worst} < {}\n{}",
        bar.cosine,
        report.join("\n")
    );
}

#[test]
fn q4_k_m_matches_llamacpp() {
    parity("Q4_K_M", GOAL);
}

#[test]
fn q5_k_m_matches_llamacpp() {
    parity("Q5_K_M", GOAL);
}

#[test]
fn q6_k_matches_llamacpp() {
    parity("Q6_K", GOAL);
}

#[test]
fn q8_0_matches_llamacpp() {
    parity("Q8_0", GOAL);
}

#[test]
fn q4_0_matches_llamacpp() {
    parity("Q4_0", GOAL);
}

#[test]
fn f16_matches_llamacpp() {
    parity("F16", GOAL);
}
