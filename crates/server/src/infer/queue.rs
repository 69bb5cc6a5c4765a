//! The waiting queue and TGI's admission rule: which waiting requests join
//! the running batch before the next step.
//!
//! A joining prompt is prefilled in the same forward pass as the running
//! sequences' decode, as in TGI v3 with chunked prefill. TGI then drops its
//! minimum join size (`--waiting-served-ratio`, `--max-waiting-tokens`):
//! "chunking allow us to consistently run at the compute bound, making
//! min_size useless". So does this queue: holding a newcomer back would
//! only leave a batch slot empty for up to `--max-waiting-tokens` steps.

use std::collections::VecDeque;

use crate::config::ServerConfig;

/// The budgets that bound a batch (TGI's router flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchLimits {
    pub max_batch_prefill_tokens: usize,
    pub max_batch_total_tokens: usize,
    pub max_batch_size: Option<usize>,
}

impl From<&ServerConfig> for BatchLimits {
    fn from(c: &ServerConfig) -> Self {
        Self {
            max_batch_prefill_tokens: c.max_batch_prefill_tokens,
            max_batch_total_tokens: c.max_batch_total_tokens,
            max_batch_size: c.max_batch_size,
        }
    }
}

/// What admission needs to know about a waiting request.
pub trait Budgeted {
    /// Prompt tokens (prefill work).
    fn prompt_tokens(&self) -> usize;
    /// Prompt plus maximum new tokens.
    fn total_tokens(&self) -> usize;
}

/// The running batch, as admission sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchState {
    pub size: usize,
    /// Sum of `total_tokens` of the running sequences.
    pub tokens: usize,
}

/// Requests waiting to join, first come first served.
pub struct Queue<T> {
    limits: BatchLimits,
    waiting: VecDeque<T>,
}

impl<T: Budgeted> Queue<T> {
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            waiting: VecDeque::new(),
        }
    }

    pub fn push(&mut self, entry: T) {
        self.waiting.push_back(entry);
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Removes the entries `gone` says are gone (e.g. their client left)
    /// and returns how many.
    pub fn remove_where(&mut self, gone: impl Fn(&T) -> bool) -> usize {
        let before = self.waiting.len();
        self.waiting.retain(|e| !gone(e));
        before - self.waiting.len()
    }

    /// The requests that join the batch now. Like TGI v3's `next_batch`
    /// with chunking: in arrival order while the prefill budget (less the
    /// running sequences' one decode token each), the total-token budget and
    /// the size cap allow.
    pub fn next_batch(&mut self, batch: BatchState) -> Vec<T> {
        let l = &self.limits;
        let prefill_budget = l.max_batch_prefill_tokens.saturating_sub(batch.size);
        let room = l
            .max_batch_size
            .map_or(usize::MAX, |m| m.saturating_sub(batch.size));
        let (mut take, mut prefill, mut tokens) = (0, 0, batch.tokens);
        for e in &self.waiting {
            if take == room
                || prefill + e.prompt_tokens() > prefill_budget
                || tokens + e.total_tokens() > l.max_batch_total_tokens
            {
                break;
            }
            take += 1;
            prefill += e.prompt_tokens();
            tokens += e.total_tokens();
        }
        self.waiting.drain(..take).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Req(usize, usize);

    impl Budgeted for Req {
        fn prompt_tokens(&self) -> usize {
            self.0
        }
        fn total_tokens(&self) -> usize {
            self.0 + self.1
        }
    }

    fn limits() -> BatchLimits {
        BatchLimits {
            max_batch_prefill_tokens: 100,
            max_batch_total_tokens: 1000,
            max_batch_size: Some(8),
        }
    }

    fn queue(n: usize, prompt: usize) -> Queue<Req> {
        let mut q = Queue::new(limits());
        for _ in 0..n {
            q.push(Req(prompt, 50));
        }
        q
    }

    #[test]
    fn an_empty_batch_takes_what_the_prefill_budget_allows() {
        let mut q = queue(5, 30);
        assert_eq!(q.next_batch(BatchState::default()).len(), 3);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_newcomer_joins_a_running_batch_at_once_within_the_prefill_budget() {
        let running = BatchState {
            size: 7,
            tokens: 400,
        };
        // No minimum join size: one waiting request joins the next step.
        let mut q = queue(1, 10);
        assert_eq!(q.next_batch(running).len(), 1);
        // The running sequences' decode tokens count against the prefill
        // budget: 100 - 4 = 96 holds three 31-token prompts, not four.
        let mut q = queue(4, 31);
        assert_eq!(q.next_batch(BatchState { size: 4, tokens: 0 }).len(), 3);
        // Four 25-token prompts fill an empty batch's 100 exactly; one
        // running sequence leaves 99.
        let mut q = queue(4, 25);
        assert_eq!(q.next_batch(BatchState { size: 0, tokens: 0 }).len(), 4);
        let mut q = queue(4, 25);
        assert_eq!(q.next_batch(BatchState { size: 1, tokens: 0 }).len(), 3);
    }

    #[test]
    fn size_and_total_token_budgets_cap_the_batch() {
        let mut q = queue(5, 10);
        let full = BatchState { size: 7, tokens: 0 };
        assert_eq!(q.next_batch(full).len(), 1, "max_batch_size 8");
        let heavy = BatchState {
            size: 1,
            tokens: 900,
        };
        assert_eq!(q.next_batch(heavy).len(), 1, "60 tokens each, 100 left");
        assert_eq!(q.remove_where(|r| r.0 == 10), 3);
        assert!(q.is_empty());
    }
}
