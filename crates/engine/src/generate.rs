//! Generation: a [`Sequence`] is one request's state (cache, sampler, text,
//! stop rules); [`generate`] runs one alone and [`generate_batch`] runs many
//! through the same packed forward passes, which is what a continuous
//! batcher does step by step.

use std::time::{Duration, Instant};

use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::model::{Llama, SeqStep};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Limits and stop rules of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_new_tokens: usize,
    /// End-of-generation tokens and stop sequences are ignored until this
    /// many tokens are generated (vLLM's `min_tokens`).
    pub min_new_tokens: usize,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    pub sampling: SamplingParams,
    /// Compute logits after every prompt token (for the prompt tokens'
    /// log-probabilities); the prompt then runs whole, with no reused prefix.
    pub prompt_logprobs: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            min_new_tokens: 0,
            stop: Vec::new(),
            ignore_eos: false,
            sampling: SamplingParams::default(),
            prompt_logprobs: false,
        }
    }
}

/// Why a sequence ended (TGI's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_new_tokens` or the context was reached.
    Length,
    /// The model produced an end-of-generation token.
    EosToken,
    /// The text came to contain a stop sequence.
    StopSequence,
}

impl FinishReason {
    /// TGI's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::EosToken => "eos_token",
            Self::StopSequence => "stop_sequence",
        }
    }
}

/// How many leading tokens `a` and `b` have in common.
pub fn shared_prefix_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One request being generated.
pub struct Sequence {
    pub prompt_ids: Vec<u32>,
    /// Generated ids; an end-of-generation token that stopped the sequence
    /// is not included.
    pub generated_ids: Vec<u32>,
    /// Generated text, including a stop sequence that ended it.
    pub text: String,
    pub finish: Option<FinishReason>,
    pub cache: KvCache,
    params: GenerateParams,
    sampler: Sampler,
    decoder: StreamDecoder,
    history: Vec<u32>,
    context_length: usize,
}

impl Sequence {
    /// A new sequence; errors on an empty prompt, bad sampling parameters,
    /// or a prompt that does not fit the context.
    pub fn new(model: &Llama, prompt_ids: Vec<u32>, params: GenerateParams) -> Result<Self> {
        Self::with_cache(model, prompt_ids, params, model.new_cache())
    }

    /// A new sequence writing into `cache` (empty: e.g. a reservation from
    /// a server's [`KvPool`](crate::kv_cache::KvPool)).
    pub fn with_cache(
        model: &Llama,
        prompt_ids: Vec<u32>,
        params: GenerateParams,
        cache: KvCache,
    ) -> Result<Self> {
        params.sampling.validate()?;
        if prompt_ids.is_empty() {
            return Err(EngineError::InvalidRequest(
                "the prompt has no tokens".into(),
            ));
        }
        let context_length = model.config().context_length;
        if prompt_ids.len() >= context_length {
            return Err(EngineError::ContextFull {
                needed: prompt_ids.len() + 1,
                limit: context_length,
            });
        }
        Ok(Self {
            sampler: Sampler::new(params.sampling.clone()),
            cache,
            history: prompt_ids.clone(),
            prompt_ids,
            generated_ids: Vec::new(),
            text: String::new(),
            finish: if params.max_new_tokens == 0 {
                Some(FinishReason::Length)
            } else {
                None
            },
            params,
            decoder: StreamDecoder::new(),
            context_length,
        })
    }

    /// The seed of this sequence's sampler.
    pub fn seed(&self) -> u64 {
        self.sampler.seed()
    }

    /// Tokens to feed at the next step: the prompt (or what a reused
    /// prefix left of it) first, then the last generated token.
    pub fn next_input(&self) -> &[u32] {
        &self.history[self.cache.len()..]
    }

    /// The next step as part of a batch.
    pub fn next_step(&mut self) -> SeqStep<'_> {
        // A prompt resumed after a cached prefix keeps the attention order
        // of the full prefill it replaces.
        let prefill_order = self.prompt_ids.len() > 1 && self.cache.len() < self.prompt_ids.len();
        let all_logits = self.params.prompt_logprobs && self.cache.is_empty();
        SeqStep {
            tokens: &self.history[self.cache.len()..],
            cache: &mut self.cache,
            prefill_order,
            all_logits,
        }
    }

    /// Whether the prompt's own log-probabilities were asked for (the
    /// first step then returns logits after every prompt token).
    pub fn wants_prompt_logprobs(&self) -> bool {
        self.params.prompt_logprobs
    }

    /// The tokens whose keys and values the cache holds.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.history[..self.cache.len()]
    }

    /// Starts from `cache`, which holds the keys and values of `prefix`:
    /// the positions this sequence's prompt shares with it are kept (all but
    /// the prompt's last token, which must run to give logits) and only the
    /// rest of the prompt is prefilled. Returns the positions reused. Call
    /// before the first step. The pages move into this sequence's cache
    /// (within its reservation, when it has one).
    pub fn reuse_prefix(&mut self, prefix: &[u32], cache: KvCache) -> Result<usize> {
        debug_assert!(self.cache.is_empty() && self.generated_ids.is_empty());
        let shared = shared_prefix_len(prefix, &self.prompt_ids)
            .min(self.prompt_ids.len() - 1)
            .min(cache.len());
        self.cache.adopt_prefix(cache, shared)?;
        Ok(shared)
    }

    /// Takes the logits after the last step, picks a token and updates
    /// text and finish state. Returns the token and the text it completed.
    pub fn accept(&mut self, tok: &Tokenizer, logits: &mut [f32]) -> (u32, String) {
        let below_min = self.generated_ids.len() < self.params.min_new_tokens;
        if below_min && !self.params.ignore_eos {
            for &id in tok.eog_ids() {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        let id = self.sampler.sample(logits, &self.history);
        self.history.push(id);
        if !self.params.ignore_eos && tok.is_eog(id) {
            self.finish = Some(FinishReason::EosToken);
            let rest = self.decoder.finish();
            self.text.push_str(&rest);
            return (id, rest);
        }
        self.generated_ids.push(id);
        let piece = self.decoder.push(tok, id);
        let before = self.text.len();
        self.text.push_str(&piece);
        // vLLM checks stop strings once the count, this token included,
        // reaches min_tokens.
        if self.generated_ids.len() >= self.params.min_new_tokens && self.hit_stop(before) {
            self.finish = Some(FinishReason::StopSequence);
        } else if self.generated_ids.len() >= self.params.max_new_tokens
            || self.cache.len() + 1 >= self.context_length
        {
            self.finish = Some(FinishReason::Length);
        }
        if self.finish.is_some() {
            let rest = self.decoder.finish();
            self.text.push_str(&rest);
            return (id, piece + &rest);
        }
        (id, piece)
    }

    /// Whether a stop sequence ends within the text added after `before`.
    fn hit_stop(&self, before: usize) -> bool {
        self.params.stop.iter().any(|s| {
            let from = before.saturating_sub(s.len());
            let from = (0..=from)
                .rev()
                .find(|i| self.text.is_char_boundary(*i))
                .unwrap_or(0);
            !s.is_empty() && self.text[from..].contains(s.as_str())
        })
    }
}

/// A finished generation with its timings.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    pub seed: u64,
    /// The first forward pass (the whole prompt) and the first token's choice.
    pub prefill: Duration,
    /// All later steps together.
    pub decode: Duration,
}

impl Generation {
    fn from_sequence(s: Sequence, prefill: Duration, decode: Duration) -> Self {
        Self {
            seed: s.seed(),
            finish_reason: s.finish.unwrap_or(FinishReason::Length),
            prompt_ids: s.prompt_ids,
            generated_ids: s.generated_ids,
            text: s.text,
            prefill,
            decode,
        }
    }

    /// Mean time per decode step (tokens after the first).
    pub fn decode_per_token(&self) -> Duration {
        let steps = self.generated_ids.len().saturating_sub(1).max(1);
        self.decode / steps as u32
    }
}

/// Runs one prompt to completion, calling `on_token` with each token and
/// the text it completed.
pub fn generate(
    model: &Llama,
    tok: &Tokenizer,
    prompt_ids: Vec<u32>,
    params: GenerateParams,
    on_token: impl FnMut(u32, &str),
) -> Result<Generation> {
    generate_observed(model, tok, prompt_ids, params, |_| {}, on_token)
}

/// [`generate`], also showing `on_logits` each step's logits before the
/// sampler (which may change them) picks the token: what parity checks
/// compare beside the tokens.
pub fn generate_observed(
    model: &Llama,
    tok: &Tokenizer,
    prompt_ids: Vec<u32>,
    params: GenerateParams,
    mut on_logits: impl FnMut(&[f32]),
    mut on_token: impl FnMut(u32, &str),
) -> Result<Generation> {
    let mut seq = Sequence::new(model, prompt_ids, params)?;
    let mut prefill = Duration::ZERO;
    let mut decode = Duration::ZERO;
    while seq.finish.is_none() {
        let start = Instant::now();
        let first = seq.cache.is_empty();
        let mut logits = model.forward(&mut [seq.next_step()])?;
        on_logits(&logits);
        let (id, text) = seq.accept(tok, &mut logits);
        if first {
            prefill = start.elapsed();
        } else {
            decode += start.elapsed();
        }
        on_token(id, &text);
    }
    Ok(Generation::from_sequence(seq, prefill, decode))
}

/// Runs several prompts together: every step is one forward pass over all
/// unfinished sequences (prefills and decodes mixed), finished ones leave.
pub fn generate_batch(
    model: &Llama,
    tok: &Tokenizer,
    prompts: Vec<Vec<u32>>,
    params: &GenerateParams,
) -> Result<Vec<Generation>> {
    let mut seqs = prompts
        .into_iter()
        .map(|p| Sequence::new(model, p, params.clone()))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut first_step = None;
    loop {
        let active: Vec<usize> = (0..seqs.len())
            .filter(|i| seqs[*i].finish.is_none())
            .collect();
        if active.is_empty() {
            break;
        }
        let mut steps: Vec<SeqStep<'_>> = seqs
            .iter_mut()
            .filter(|s| s.finish.is_none())
            .map(Sequence::next_step)
            .collect();
        let mut logits = model.forward(&mut steps)?;
        drop(steps);
        let vocab = model.config().vocab_size;
        for (n, &i) in active.iter().enumerate() {
            seqs[i].accept(tok, &mut logits[n * vocab..(n + 1) * vocab]);
        }
        first_step.get_or_insert_with(|| start.elapsed());
    }
    let prefill = first_step.unwrap_or_default();
    let decode = start.elapsed().saturating_sub(prefill);
    Ok(seqs
        .into_iter()
        .map(|s| Generation::from_sequence(s, prefill, decode))
        .collect())
}
