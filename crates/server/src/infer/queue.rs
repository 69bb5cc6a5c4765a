//! The waiting queue and TGI's admission rule: which waiting requests join
//! the running batch before the next step.

use std::collections::VecDeque;

use crate::config::ServerConfig;

/// The budgets that bound a batch (TGI's router flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchLimits {
    pub max_batch_prefill_tokens: usize,
    pub max_batch_total_tokens: usize,
    pub max_batch_size: Option<usize>,
    pub waiting_served_ratio: f32,
    pub max_waiting_tokens: usize,
}

impl From<&ServerConfig> for BatchLimits {
    fn from(c: &ServerConfig) -> Self {
        Self {
            max_batch_prefill_tokens: c.max_batch_prefill_tokens,
            max_batch_total_tokens: c.max_batch_total_tokens,
            max_batch_size: c.max_batch_size,
            waiting_served_ratio: c.waiting_served_ratio,
            max_waiting_tokens: c.max_waiting_tokens,
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
    /// Decode steps since requests last joined.
    pub steps_since_join: usize,
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

    /// The requests that join the batch now. Like TGI's `next_batch`:
    /// in arrival order while the prefill, total-token and size budgets
    /// allow; into a running batch only if at least
    /// `waiting_served_ratio x size` can join, unless the batch is empty or
    /// `max_waiting_tokens` steps have passed since the last join (so no
    /// request waits for another to finish).
    pub fn next_batch(&mut self, batch: BatchState) -> Vec<T> {
        let l = &self.limits;
        let min_size = if batch.size == 0 || batch.steps_since_join >= l.max_waiting_tokens {
            1
        } else {
            ((batch.size as f32 * l.waiting_served_ratio).floor() as usize).max(1)
        };
        let room = l
            .max_batch_size
            .map_or(usize::MAX, |m| m.saturating_sub(batch.size));
        let (mut take, mut prefill, mut tokens) = (0, 0, batch.tokens);
        for e in &self.waiting {
            if take == room
                || prefill + e.prompt_tokens() > l.max_batch_prefill_tokens
                || tokens + e.total_tokens() > l.max_batch_total_tokens
            {
                break;
            }
            take += 1;
            prefill += e.prompt_tokens();
            tokens += e.total_tokens();
        }
        if take < min_size {
            return Vec::new();
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
            waiting_served_ratio: 0.3,
            max_waiting_tokens: 20,
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
    fn a_running_batch_waits_for_enough_requests_or_enough_steps() {
        let running = BatchState {
            size: 7,
            tokens: 400,
            steps_since_join: 3,
        };
        // 7 x 0.3 = 2 must be able to join; one waiting is not enough...
        let mut q = queue(1, 10);
        assert!(q.next_batch(running).is_empty());
        // ...until max_waiting_tokens steps have passed.
        let later = BatchState {
            steps_since_join: 20,
            ..running
        };
        assert_eq!(q.next_batch(later).len(), 1);
        // A small batch takes a single newcomer at once.
        let mut q = queue(1, 10);
        let small = BatchState {
            size: 3,
            tokens: 100,
            steps_since_join: 0,
        };
        assert_eq!(q.next_batch(small).len(), 1);
    }

    #[test]
    fn size_and_total_token_budgets_cap_the_batch() {
        let mut q = queue(5, 10);
        let full = BatchState {
            size: 7,
            tokens: 0,
            steps_since_join: 99,
        };
        assert_eq!(q.next_batch(full).len(), 1, "max_batch_size 8");
        let heavy = BatchState {
            size: 1,
            tokens: 900,
            steps_since_join: 0,
        };
        assert_eq!(q.next_batch(heavy).len(), 1, "60 tokens each, 100 left");
        assert_eq!(q.remove_where(|r| r.0 == 10), 3);
        assert!(q.is_empty());
    }
}
