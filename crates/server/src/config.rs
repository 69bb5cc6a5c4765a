//! Every limit of the server in one place, with TGI's launcher defaults.

use std::time::Duration;

/// Limits and settings of one server (TGI's launcher flags).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The name `/info` and `/v1/models` report.
    pub model_id: String,
    /// Requests in flight (queued or generating) before new ones get 429.
    pub max_concurrent_requests: usize,
    /// Longest prompt, in tokens.
    pub max_input_tokens: usize,
    /// Longest prompt + generation, in tokens.
    pub max_total_tokens: usize,
    /// Prompt tokens that may enter the batch in one step.
    pub max_batch_prefill_tokens: usize,
    /// Tokens (prompt + max new) all running sequences may reach together:
    /// the KV cache pool's size, which admission reserves from.
    pub max_batch_total_tokens: usize,
    /// Sequences in the running batch; `None` = only the token budgets limit it.
    pub max_batch_size: Option<usize>,
    /// TGI's minimum join size, accepted and reported in `/info`; like TGI
    /// v3 with chunked prefill, admission does not use it (see `infer::queue`).
    pub waiting_served_ratio: f32,
    /// As `waiting_served_ratio`: accepted, reported, not used.
    pub max_waiting_tokens: usize,
    pub max_stop_sequences: usize,
    pub max_best_of: usize,
    /// When set, inference routes require `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Largest request body, in bytes.
    pub payload_limit: usize,
    /// How long a SIGTERM waits for in-flight requests before exiting.
    pub shutdown_timeout: Duration,
    /// Memory for finished sequences' key/value caches that later prompts
    /// with the same start reuse (prefix caching); 0 turns it off.
    pub prefix_cache_bytes: usize,
}

impl ServerConfig {
    /// TGI's defaults for a model with `context_length` positions.
    pub fn for_model(model_id: &str, context_length: usize) -> Self {
        let mut c = Self {
            model_id: model_id.to_string(),
            max_concurrent_requests: 128,
            max_input_tokens: 0,
            max_total_tokens: 0,
            max_batch_prefill_tokens: 0,
            max_batch_total_tokens: 0,
            max_batch_size: None,
            waiting_served_ratio: 0.3,
            max_waiting_tokens: 20,
            max_stop_sequences: 4,
            max_best_of: 1,
            api_key: None,
            payload_limit: 2_000_000,
            shutdown_timeout: Duration::from_secs(60),
            prefix_cache_bytes: 64 << 20,
        };
        c.set_max_total_tokens(context_length.min(2048));
        c
    }

    /// Sets `max_total_tokens` and the limits TGI derives from it: input
    /// = total - 1, prefill budget = input + 50, batch total = 32 x total.
    pub fn set_max_total_tokens(&mut self, total: usize) {
        self.max_total_tokens = total;
        self.max_input_tokens = total.saturating_sub(1);
        self.max_batch_prefill_tokens = self.max_input_tokens + 50;
        // TGI sizes this from free GPU memory, as `servebench serve` does
        // from free memory (`kv_budget`); a server built in code gets 32
        // full-length sequences (pages are allocated only when used).
        self.max_batch_total_tokens = total * 32;
    }

    /// The launcher's consistency checks; `context_length` is the model's.
    pub fn check(&self, context_length: usize) -> Result<(), String> {
        let fail = |m: String| Err(m);
        if self.max_total_tokens > context_length {
            return fail(format!(
                "--max-total-tokens {} exceeds the model's context length {context_length}",
                self.max_total_tokens
            ));
        }
        if self.max_input_tokens == 0 || self.max_input_tokens >= self.max_total_tokens {
            return fail(format!(
                "--max-input-tokens ({}) must be > 0 and < --max-total-tokens ({})",
                self.max_input_tokens, self.max_total_tokens
            ));
        }
        if self.max_batch_prefill_tokens < self.max_input_tokens {
            return fail(format!(
                "--max-batch-prefill-tokens ({}) must be >= --max-input-tokens ({})",
                self.max_batch_prefill_tokens, self.max_input_tokens
            ));
        }
        if self.max_batch_total_tokens < self.max_total_tokens {
            return fail(format!(
                "--max-batch-total-tokens ({}) must be >= --max-total-tokens ({})",
                self.max_batch_total_tokens, self.max_total_tokens
            ));
        }
        if self.max_batch_size == Some(0) || self.max_concurrent_requests == 0 {
            return fail("--max-batch-size and --max-concurrent-requests must be > 0".into());
        }
        if !(0.0..=1.0).contains(&self.waiting_served_ratio) {
            return fail("--waiting-served-ratio must be between 0 and 1".into());
        }
        if self.max_best_of == 0 {
            return fail("--max-best-of must be >= 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_inconsistent_limits_are_named() {
        let c = ServerConfig::for_model("m", 8192);
        assert_eq!((c.max_total_tokens, c.max_input_tokens), (2048, 2047));
        assert!(c.check(8192).is_ok());
        assert!(c.check(1024).unwrap_err().contains("--max-total-tokens"));
        let bad = ServerConfig {
            max_batch_prefill_tokens: 10,
            ..c.clone()
        };
        assert!(bad
            .check(8192)
            .unwrap_err()
            .contains("--max-batch-prefill-tokens"));
        let small = ServerConfig::for_model("m", 512);
        assert_eq!(small.max_total_tokens, 512);
        assert!(small.check(512).is_ok());
    }
}
