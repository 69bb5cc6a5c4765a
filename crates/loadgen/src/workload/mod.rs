//! What is asked: the prompts of a run and how many tokens each may generate.

mod dataset;
mod synthetic;

pub use dataset::load_dataset;
pub use synthetic::{corpus, synthetic_prompts, InputTokens};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The 2023 study's prompt, the default.
pub const DEFAULT_PROMPT: &str = "Write a 500 word long story about llamas";
/// The 2023 study's `max_new_tokens`, the default.
pub const DEFAULT_MAX_NEW_TOKENS: u32 = 50;

/// One prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    pub text: String,
    /// The generation limit sent with it.
    pub max_new_tokens: u32,
    /// Its length in tokens, when known (synthetic prompts).
    pub input_tokens: Option<u32>,
}

impl Prompt {
    /// A prompt of unknown token length.
    pub fn new(text: impl Into<String>, max_new_tokens: u32) -> Self {
        Self {
            text: text.into(),
            max_new_tokens,
            input_tokens: None,
        }
    }
}

/// The prompts of a run, handed out in order and round-robin so that a run is
/// reproducible and every level sees the same mix.
#[derive(Debug, Clone)]
pub struct Prompts {
    list: Arc<[Prompt]>,
    next: Arc<AtomicUsize>,
}

impl Prompts {
    /// A pool; it must not be empty.
    pub fn new(list: Vec<Prompt>) -> crate::Result<Self> {
        if list.is_empty() {
            return Err(crate::LoadgenError::config("workload", "no prompts"));
        }
        Ok(Self {
            list: list.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The next prompt, with its position in the pool.
    pub fn next(&self) -> (usize, &Prompt) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.list.len();
        (i, &self.list[i])
    }

    /// All prompts in order.
    pub fn all(&self) -> &[Prompt] {
        &self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_cycle_in_order() {
        let p = Prompts::new(vec![Prompt::new("a", 1), Prompt::new("b", 2)]).unwrap();
        let got: Vec<_> = (0..5).map(|_| p.next().1.text.clone()).collect();
        assert_eq!(got, ["a", "b", "a", "b", "a"]);
        assert!(Prompts::new(vec![]).is_err());
    }
}
