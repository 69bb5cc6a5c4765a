//! From an API's parameters to a [`ValidRequest`]: tokenizes the prompt and
//! enforces TGI's rules and the server's limits. Both APIs end here, so a
//! rule is written once.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use servebench_engine::{Engine, GenerateParams, SamplingParams};

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::infer::constraint::{Grammar, GrammarError, Grammars};
use crate::infer::ValidRequest;

/// A prompt as text or as token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// Generation parameters, API-neutral (each API maps its own names here).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters {
    pub do_sample: bool,
    pub temperature: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub typical_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// OpenAI's penalties on tokens already generated, each in [-2, 2].
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// OpenAI's `logit_bias`: token id and bias in [-100, 100].
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: Option<u64>,
    /// `None`: as many as fit in `max_total_tokens`.
    pub max_new_tokens: Option<u64>,
    pub min_new_tokens: u64,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// Keep only the last `truncate` prompt tokens.
    pub truncate: Option<u64>,
    pub want_logprobs: bool,
    /// The most likely tokens to list at each step (needs `want_logprobs`).
    pub top_logprobs: usize,
    /// The prompt tokens' log-probabilities.
    pub prompt_logprobs: bool,
    /// The grammar the output must follow, and the field that asked for it
    /// (named in errors).
    pub grammar: Option<(&'static str, Grammar)>,
}

/// Checks requests against the model and the limits.
#[derive(Clone)]
pub struct Validator {
    engine: Arc<Engine>,
    config: Arc<ServerConfig>,
    /// Built at the first constrained request (the token trie takes a
    /// moment; servers that never see one never pay).
    grammars: Arc<OnceLock<Result<Grammars, GrammarError>>>,
}

fn invalid(param: &'static str, message: String) -> ApiError {
    ApiError::invalid(param, message)
}

impl Validator {
    pub fn new(engine: Arc<Engine>, config: Arc<ServerConfig>) -> Self {
        Self {
            engine,
            config,
            grammars: Arc::new(OnceLock::new()),
        }
    }

    /// Compiles `grammar` for this model; errors name `param`.
    fn compile(
        &self,
        param: &'static str,
        grammar: &Grammar,
    ) -> Result<crate::infer::constraint::Constraint, ApiError> {
        let grammars = self
            .grammars
            .get_or_init(|| Grammars::new(self.engine.clone()))
            .as_ref()
            .map_err(|e| invalid(param, format!("constrained decoding is unavailable: {e}")))?;
        grammars
            .compile(grammar)
            .map_err(|e| invalid(param, format!("invalid `{param}`: {e}")))
    }

    /// Validates `params` and tokenizes `prompt`.
    pub fn validate(
        &self,
        prompt: Prompt,
        params: Parameters,
        received_at: Instant,
    ) -> Result<ValidRequest, ApiError> {
        let c = &self.config;
        let p = params;
        if p.temperature.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
            return Err(invalid(
                "temperature",
                "`temperature` must be strictly positive".into(),
            ));
        }
        if p.repetition_penalty
            .is_some_and(|r| !(r > 0.0 && r.is_finite()))
        {
            return Err(invalid(
                "repetition_penalty",
                "`repetition_penalty` must be strictly positive".into(),
            ));
        }
        // TGI rejects top_p == 1.0: it would be a no-op warper.
        if p.top_p.is_some_and(|v| !(v > 0.0 && v < 1.0)) {
            return Err(invalid("top_p", "`top_p` must be > 0.0 and < 1.0".into()));
        }
        if p.typical_p.is_some_and(|v| !(v > 0.0 && v < 1.0)) {
            return Err(invalid(
                "typical_p",
                "`typical_p` must be > 0.0 and < 1.0".into(),
            ));
        }
        for (param, v) in [
            ("presence_penalty", p.presence_penalty),
            ("frequency_penalty", p.frequency_penalty),
        ] {
            if v.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
                return Err(invalid(
                    param,
                    format!("`{param}` must be between -2 and 2"),
                ));
            }
        }
        let vocab = self.engine.model.config().vocab_size;
        for &(id, bias) in &p.logit_bias {
            if id as usize >= vocab {
                return Err(invalid(
                    "logit_bias",
                    format!(
                        "`logit_bias` names token {id}, outside the vocabulary of {vocab} tokens"
                    ),
                ));
            }
            if !(-100.0..=100.0).contains(&bias) {
                return Err(invalid(
                    "logit_bias",
                    format!("`logit_bias` values must be between -100 and 100. Given: {bias} for token {id}"),
                ));
            }
        }
        if p.top_k.is_some_and(|k| k <= 0) {
            return Err(invalid("top_k", "`top_k` must be strictly positive".into()));
        }
        if p.max_new_tokens == Some(0) {
            return Err(invalid(
                "max_new_tokens",
                "`max_new_tokens` must be strictly positive".into(),
            ));
        }
        if p.stop.len() > c.max_stop_sequences {
            return Err(invalid(
                "stop",
                format!(
                    "`stop` supports up to {} stop sequences. Given: {}",
                    c.max_stop_sequences,
                    p.stop.len()
                ),
            ));
        }
        if p.stop.iter().any(|s| s.is_empty()) {
            return Err(invalid("stop", "`stop` sequences cannot be empty".into()));
        }
        if let Some(t) = p.truncate {
            if t == 0 || t > c.max_input_tokens as u64 {
                return Err(invalid(
                    "truncate",
                    format!(
                        "`truncate` must be strictly positive and less than {}. Given: {t}",
                        c.max_input_tokens
                    ),
                ));
            }
        }
        let mut ids = match prompt {
            Prompt::Text(text) if text.is_empty() => {
                return Err(invalid("inputs", "`inputs` cannot be empty".into()))
            }
            Prompt::Text(text) => self.engine.tokenizer.encode(&text, true, true),
            Prompt::Ids(ids) => {
                if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
                    return Err(invalid(
                        "prompt",
                        format!("token id {bad} is outside the vocabulary of {vocab} tokens"),
                    ));
                }
                ids
            }
        };
        if ids.is_empty() {
            return Err(invalid("inputs", "`inputs` cannot be empty".into()));
        }
        if let Some(t) = p.truncate {
            let t = t as usize;
            if ids.len() > t {
                ids.drain(..ids.len() - t);
            }
        }
        let input = ids.len();
        if input > c.max_input_tokens {
            return Err(invalid(
                "inputs",
                format!(
                    "`inputs` must have less than {} tokens. Given: {input}",
                    c.max_input_tokens
                ),
            ));
        }
        let max_new = match p.max_new_tokens {
            Some(n) => n,
            None => (c.max_total_tokens - input) as u64,
        };
        if input as u64 + max_new > c.max_total_tokens as u64 {
            return Err(invalid(
                "max_new_tokens",
                format!(
                    "`inputs` tokens + `max_new_tokens` must be <= {}. Given: {input} `inputs` tokens and {max_new} `max_new_tokens`",
                    c.max_total_tokens
                ),
            ));
        }
        let max_new = max_new as usize;
        let constraint = match &p.grammar {
            Some((param, g)) => Some(self.compile(param, g)?),
            None => None,
        };
        let params = GenerateParams {
            max_new_tokens: max_new,
            min_new_tokens: (p.min_new_tokens as usize).min(max_new),
            stop: p.stop,
            ignore_eos: p.ignore_eos,
            sampling: SamplingParams {
                do_sample: p.do_sample,
                temperature: p.temperature,
                top_k: p.top_k.map(|k| k as usize),
                top_p: p.top_p,
                typical_p: p.typical_p,
                repetition_penalty: p.repetition_penalty,
                presence_penalty: p.presence_penalty.filter(|v| *v != 0.0),
                frequency_penalty: p.frequency_penalty.filter(|v| *v != 0.0),
                logit_bias: p.logit_bias,
                seed: p.seed,
            },
            prompt_logprobs: p.prompt_logprobs,
        };
        Ok(ValidRequest {
            prompt_ids: ids,
            params,
            want_logprobs: p.want_logprobs || p.top_logprobs > 0,
            top_logprobs: p.top_logprobs,
            constraint,
            received_at,
            validation: received_at.elapsed(),
        })
    }

    /// The model behind this validator (tokenizer, chat template).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The model, shared (for stream writers that outlive the handler).
    pub fn engine_handle(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// The server's limits.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }
}
