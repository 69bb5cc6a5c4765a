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

/// The budgets that bound a batch (TGI's router flags). The total-token
/// budget (`--max-batch-total-tokens`) is the KV pool's: `next_batch`'s
/// caller reserves from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchLimits {
    pub max_batch_prefill_tokens: usize,
    pub max_batch_size: Option<usize>,
}

impl From<&ServerConfig> for BatchLimits {
    fn from(c: &ServerConfig) -> Self {
        Self {
            max_batch_prefill_tokens: c.max_batch_prefill_tokens,
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

    /// The requests that join the batch now, each with what `reserve` set
    /// aside for it. Like TGI v3's `next_batch` with chunking: in arrival
    /// order while the prefill budget (less the running sequences' one
    /// decode token each) and the size cap allow and `reserve` finds room
    /// for the request's total tokens (`None`: no room now). The first
    /// request that does not fit stops the others behind it, so a long one
    /// is never overtaken forever by short ones (FIFO, no starvation).
    pub fn next_batch<R>(
        &mut self,
        running: usize,
        mut reserve: impl FnMut(&T) -> Option<R>,
    ) -> Vec<(T, R)> {
        let l = &self.limits;
        let prefill_budget = l.max_batch_prefill_tokens.saturating_sub(running);
        let room = l
            .max_batch_size
            .map_or(usize::MAX, |m| m.saturating_sub(running));
        let (mut joining, mut prefill) = (Vec::new(), 0);
        while let Some(e) = self.waiting.front() {
            if joining.len() == room || prefill + e.prompt_tokens() > prefill_budget {
                break;
            }
            let Some(r) = reserve(e) else { break };
            prefill += e.prompt_tokens();
            if let Some(e) = self.waiting.pop_front() {
                joining.push((e, r));
            }
        }
        joining
    }

    /// Takes the request at the head of the line.
    pub fn pop_front(&mut self) -> Option<T> {
        self.waiting.pop_front()
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

    /// Admits `next_batch` with `free` tokens of total-token budget left.
    fn admit(q: &mut Queue<Req>, running: usize, mut free: usize) -> usize {
        q.next_batch(running, |r| {
            let t = r.total_tokens();
            (t <= free).then(|| free -= t)
        })
        .len()
    }

    #[test]
    fn an_empty_batch_takes_what_the_prefill_budget_allows() {
        let mut q = queue(5, 30);
        assert_eq!(admit(&mut q, 0, 1000), 3);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_newcomer_joins_a_running_batch_at_once_within_the_prefill_budget() {
        // No minimum join size: one waiting request joins the next step.
        let mut q = queue(1, 10);
        assert_eq!(admit(&mut q, 7, 600), 1);
        // The running sequences' decode tokens count against the prefill
        // budget: 100 - 4 = 96 holds three 31-token prompts, not four.
        let mut q = queue(4, 31);
        assert_eq!(admit(&mut q, 4, 1000), 3);
        // Four 25-token prompts fill an empty batch's 100 exactly; one
        // running sequence leaves 99.
        let mut q = queue(4, 25);
        assert_eq!(admit(&mut q, 0, 1000), 4);
        let mut q = queue(4, 25);
        assert_eq!(admit(&mut q, 1, 1000), 3);
    }

    #[test]
    fn size_and_total_token_budgets_cap_the_batch() {
        let mut q = queue(5, 10);
        assert_eq!(admit(&mut q, 7, 1000), 1, "max_batch_size 8");
        assert_eq!(admit(&mut q, 1, 100), 1, "60 tokens each, 100 left");
        assert_eq!(q.remove_where(|r| r.0 == 10), 3);
        assert!(q.is_empty());
    }

    #[test]
    fn a_request_that_does_not_fit_holds_back_those_behind_it() {
        let mut q = Queue::new(limits());
        q.push(Req(10, 500));
        q.push(Req(10, 5));
        assert_eq!(admit(&mut q, 1, 100), 0, "the small one waits its turn");
        assert_eq!(q.pop_front(), Some(Req(10, 500)));
        assert_eq!(admit(&mut q, 0, 1000), 1);
    }
}
