//! The engine against llama.cpp on the real model in every common GGUF
//! type, each file written by llama.cpp's own `llama-quantize`: for 12
//! prompts per type (two of them about 1,000 and 3,000 tokens long), all 32
//! greedy tokens equal llama.cpp's on at least 90% of the prompts and the
//! first 8 on every prompt.

mod support;

use servebench_engine::Engine;
use support::greedy::{self, GREEDY_TOKENS};
use support::prompts::{essay, CHAT, PLAIN};

/// Greedy tokens that must agree on every prompt.
const FIRST: usize = 8;

fn parity(kind: &str) {
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
        all_equal * 10 >= results.len() * 9,
        "{kind}: only {all_equal} of {} prompts equal llama.cpp for {GREEDY_TOKENS} tokens\n{}",
        results.len(),
        report.join("\n")
    );
    assert!(
        results.iter().all(|r| r.first_equal(FIRST)),
        "{kind}: the first {FIRST} greedy tokens differ\n{}",
        report.join("\n")
    );
}

#[test]
fn q4_k_m_matches_llamacpp() {
    parity("Q4_K_M");
}

#[test]
fn q5_k_m_matches_llamacpp() {
    parity("Q5_K_M");
}

#[test]
fn q6_k_matches_llamacpp() {
    parity("Q6_K");
}

#[test]
fn q8_0_matches_llamacpp() {
    parity("Q8_0");
}

#[test]
fn q4_0_matches_llamacpp() {
    parity("Q4_0");
}

#[test]
fn f16_matches_llamacpp() {
    parity("F16");
}
