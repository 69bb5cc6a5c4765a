//! The engine's greedy continuations beside llama.cpp's for the same
//! prompt ids: the comparison every parity test makes, each with its own
//! pass rule.

use std::path::Path;
use std::sync::Mutex;

use serde_json::json;
use servebench_engine::{generate_observed, Engine, GenerateParams};

/// Greedy tokens compared per prompt (fewer where llama.cpp stops at an
/// end-of-generation token).
pub const GREEDY_TOKENS: usize = 32;

/// One prompt's outcome.
pub struct Greedy {
    pub ours: Vec<u32>,
    pub theirs: Vec<u32>,
    /// Cosine of the last prompt position's logits, ours against llama.cpp's.
    pub cosine: f64,
}

impl Greedy {
    /// Leading greedy tokens that agree.
    pub fn same_prefix(&self) -> usize {
        self.ours
            .iter()
            .zip(&self.theirs)
            .take_while(|(a, b)| a == b)
            .count()
    }

    /// Whether all greedy tokens agree, stop included.
    pub fn all_equal(&self) -> bool {
        self.ours == self.theirs
    }

    /// Whether the first `n` tokens agree, an early stop counting as a
    /// token (one side stopping where the other goes on is a difference).
    pub fn first_equal(&self, n: usize) -> bool {
        self.ours.iter().take(n).eq(self.theirs.iter().take(n))
    }

    /// A failure line for prompt `i`.
    pub fn describe(&self, i: usize) -> String {
        format!(
            "prompt {i}: {} leading greedy tokens equal, cosine {:.6}\n ours {:?}\n llama.cpp {:?}",
            self.same_prefix(),
            self.cosine,
            self.ours,
            self.theirs
        )
    }
}

/// Held by each comparison: on a 2-core machine, llama.cpp's threads and
/// the engine's of another test at the same time would take turns on the
/// cores (ggml's spin and the engine's team at every step), several times
/// slower than one comparison after another.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Greedy continuations and last-position logits of `prompts` on the file
/// at `path`, ours against llama.cpp's with a context of `n_ctx`; `None`
/// when llama-cpp-python is missing.
pub fn against_llamacpp(
    engine: &Engine,
    path: &Path,
    prompts: &[Vec<u32>],
    n_ctx: usize,
) -> Option<Vec<Greedy>> {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let request = json!({
        "model": path,
        "n_ctx": n_ctx,
        "generate": prompts.iter().map(|p| json!({"prompt_ids": p, "n": GREEDY_TOKENS})).collect::<Vec<_>>(),
    });
    let reference = super::llamacpp(&request)?;
    let mut out = Vec::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let r = &reference["generate"][i];
        let theirs: Vec<u32> = serde_json::from_value(r["greedy_ids"].clone()).unwrap();
        let want_logits: Vec<f32> = serde_json::from_value(r["last_logits"].clone()).unwrap();
        let params = GenerateParams {
            max_new_tokens: GREEDY_TOKENS,
            ..Default::default()
        };
        let mut prompt_logits = None;
        let ours = generate_observed(
            &engine.model,
            &engine.tokenizer,
            prompt.clone(),
            params,
            |logits| {
                prompt_logits.get_or_insert_with(|| logits.to_vec());
            },
            |_, _| {},
        )
        .unwrap();
        let result = Greedy {
            ours: ours.generated_ids,
            theirs,
            cosine: super::cosine(&prompt_logits.unwrap(), &want_logits),
        };
        eprintln!(
            "prompt {i} ({} tokens): cosine {:.6}, {} leading greedy tokens equal{}, ours {:?}",
            prompt.len(),
            result.cosine,
            result.same_prefix(),
            if result.all_equal() { " (all)" } else { "" },
            engine.tokenizer.decode(&result.ours, false)
        );
        out.push(result);
    }
    Some(out)
}
