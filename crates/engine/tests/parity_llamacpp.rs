//! The engine against llama.cpp on the real model: same token ids, same
//! greedy continuations, near-identical logits.

mod support;

use servebench_engine::{generate, Engine, GenerateParams};
use support::greedy::{self, GREEDY_TOKENS};
use support::prompts::{essay, past_256, CHAT, PLAIN};

#[test]
fn greedy_tokens_and_logits_match_llamacpp() {
    let Some(path) = support::real_model() else {
        return;
    };
    let engine = Engine::load(&path).unwrap();
    let prompts: Vec<Vec<u32>> = PLAIN
        .iter()
        .map(|p| engine.encode_prompt(p, false).unwrap())
        .chain(CHAT.iter().map(|p| engine.encode_prompt(p, true).unwrap()))
        .chain(std::iter::once(
            engine.encode_prompt(&past_256(), false).unwrap(),
        ))
        .collect();
    assert!(
        prompts.iter().any(|p| p.len() > 256),
        "the long prompt is long"
    );
    let Some(failures) = compare_with_llamacpp(&engine, &path, &prompts, 2048) else {
        return;
    };
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Prompts of about 1,000 and 3,000 tokens: llama.cpp prefills them in
/// batches of 512, the engine in one pass; greedy tokens must still agree.
#[test]
fn long_prompts_match_llamacpp() {
    let Some(path) = support::real_model() else {
        return;
    };
    let engine = Engine::load(&path).unwrap();
    let prompts: Vec<Vec<u32>> = [1_000, 3_000]
        .into_iter()
        .map(|n| engine.encode_prompt(&essay(n), false).unwrap())
        .collect();
    for (p, n) in prompts.iter().zip([1_000, 3_000]) {
        assert!(
            p.len() >= n * 9 / 10 && p.len() <= n * 11 / 10,
            "{} tokens",
            p.len()
        );
    }
    let Some(failures) = compare_with_llamacpp(&engine, &path, &prompts, 4096) else {
        return;
    };
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Greedy tokens and last-position logits of `prompts`, ours against
/// llama.cpp's with a context of `n_ctx`; `None` when llama-cpp-python is
/// missing, else the failures: any prompt whose greedy tokens differ, or
/// whose logits' cosine is under 0.999.
fn compare_with_llamacpp(
    engine: &Engine,
    path: &std::path::Path,
    prompts: &[Vec<u32>],
    n_ctx: usize,
) -> Option<Vec<String>> {
    let results = greedy::against_llamacpp(engine, path, prompts, n_ctx)?;
    let all_equal = results.iter().filter(|r| r.all_equal()).count();
    eprintln!(
        "{all_equal} of {} prompts equal llama.cpp for all {GREEDY_TOKENS} greedy tokens",
        prompts.len()
    );
    Some(
        results
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.all_equal() || r.cosine < 0.999)
            .map(|(i, r)| r.describe(i))
            .collect(),
    )
}

#[test]
fn eight_prompts_decoded_together_equal_each_alone() {
    let Some(path) = support::real_model() else {
        return;
    };
    let engine = Engine::load(&path).unwrap();
    let prompts: Vec<Vec<u32>> = PLAIN
        .iter()
        .take(4)
        .map(|p| engine.encode_prompt(p, false).unwrap())
        .chain(
            CHAT.iter()
                .take(4)
                .map(|p| engine.encode_prompt(p, true).unwrap()),
        )
        .collect();
    assert_eq!(prompts.len(), 8);
    let lengths: std::collections::HashSet<usize> = prompts.iter().map(|p| p.len()).collect();
    assert!(lengths.len() >= 6, "prompts should differ in length");
    let params = GenerateParams {
        max_new_tokens: 24,
        ..Default::default()
    };
    let together = servebench_engine::generate_batch(
        &engine.model,
        &engine.tokenizer,
        prompts.clone(),
        &params,
    )
    .unwrap();
    for (p, t) in prompts.into_iter().zip(together) {
        let alone = generate(
            &engine.model,
            &engine.tokenizer,
            p,
            params.clone(),
            |_, _| {},
        )
        .unwrap();
        assert_eq!(alone.generated_ids, t.generated_ids);
    }
}
