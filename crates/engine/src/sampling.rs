//! Choosing the next token from logits: OpenAI's `logit_bias`, the
//! repetition penalty, OpenAI's presence and frequency penalties, then
//! temperature, top-k, top-p and typical-p (in the order of
//! transformers/TGI's logits warpers), then greedy or seeded sampling.
//! Also the log-probabilities clients ask for (`logprobs`, `top_n_tokens`).

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{EngineError, Result};

/// How to pick tokens. All `None`/`false`: greedy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingParams {
    pub do_sample: bool,
    /// `Some(0.0)` means greedy.
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub typical_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// OpenAI's: subtracted once from every token already generated.
    pub presence_penalty: Option<f32>,
    /// OpenAI's: subtracted per occurrence of a token already generated.
    pub frequency_penalty: Option<f32>,
    /// OpenAI's `logit_bias`: added to these tokens' logits before anything
    /// else (-100 bans a token, 100 all but forces it).
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: Option<u64>,
}

impl SamplingParams {
    /// Rejects values no sampler can honour.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(EngineError::InvalidRequest(m.to_string()));
        if self
            .temperature
            .is_some_and(|t| !(t >= 0.0 && t.is_finite()))
        {
            return bad("temperature must be a finite number >= 0");
        }
        if self.top_k == Some(0) {
            return bad("top_k must be > 0");
        }
        if self.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return bad("top_p must be in (0, 1]");
        }
        if self.typical_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return bad("typical_p must be in (0, 1]");
        }
        if self
            .repetition_penalty
            .is_some_and(|p| !(p > 0.0 && p.is_finite()))
        {
            return bad("repetition_penalty must be > 0");
        }
        for p in [self.presence_penalty, self.frequency_penalty]
            .into_iter()
            .flatten()
        {
            if !p.is_finite() {
                return bad("presence and frequency penalties must be finite");
            }
        }
        if self.logit_bias.iter().any(|(_, b)| !b.is_finite()) {
            return bad("logit_bias values must be finite");
        }
        Ok(())
    }

    /// Whether [`Sampler::sample`] changes logits in place (bias, penalties).
    pub fn adjusts_logits(&self) -> bool {
        !self.logit_bias.is_empty()
            || self.repetition_penalty.is_some_and(|p| p != 1.0)
            || self.presence_penalty.is_some_and(|p| p != 0.0)
            || self.frequency_penalty.is_some_and(|p| p != 0.0)
    }

    /// Whether tokens are drawn at random (otherwise argmax).
    pub fn is_sampling(&self) -> bool {
        if self.temperature == Some(0.0) {
            return false;
        }
        self.do_sample
            || self.temperature.is_some_and(|t| t != 1.0)
            || self.top_k.is_some()
            || self.top_p.is_some_and(|p| p < 1.0)
            || self.typical_p.is_some_and(|p| p < 1.0)
    }
}

/// A sampler with its own random stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    seed: u64,
    rng: StdRng,
    candidates: Vec<(u32, f32)>,
    /// How often each token was picked (for the presence and frequency
    /// penalties, which, as in OpenAI's and vLLM's, count generated tokens
    /// only).
    counts: HashMap<u32, u32>,
}

impl Sampler {
    /// Seeds from `params.seed`, or from the OS when absent.
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| rand::rng().random());
        Self {
            rng: StdRng::seed_from_u64(seed),
            seed,
            params,
            candidates: Vec::new(),
            counts: HashMap::new(),
        }
    }

    /// The seed in use (reported back to clients, as TGI does).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Picks a token. `history` is prompt plus generated ids (for the
    /// repetition penalty). `logits` is modified.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.adjust(logits, history);
        let id = self.pick(logits);
        *self.counts.entry(id).or_default() += 1;
        id
    }

    /// The bias and the penalties, in place.
    fn adjust(&self, logits: &mut [f32], history: &[u32]) {
        for &(id, bias) in &self.params.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += bias;
            }
        }
        if let Some(p) = self.params.repetition_penalty.filter(|p| *p != 1.0) {
            // Each distinct token once, as transformers' gather/scatter does.
            let mut seen = std::collections::HashSet::with_capacity(history.len());
            for &id in history {
                if seen.insert(id) {
                    if let Some(l) = logits.get_mut(id as usize) {
                        *l = if *l > 0.0 { *l / p } else { *l * p };
                    }
                }
            }
        }
        let presence = self.params.presence_penalty.unwrap_or(0.0);
        let frequency = self.params.frequency_penalty.unwrap_or(0.0);
        if presence != 0.0 || frequency != 0.0 {
            for (&id, &n) in &self.counts {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l -= presence + frequency * n as f32;
                }
            }
        }
    }

    /// Greedy or sampled choice from adjusted logits.
    fn pick(&mut self, logits: &[f32]) -> u32 {
        if !self.params.is_sampling() {
            return argmax(logits);
        }
        let temp = self.params.temperature.unwrap_or(1.0);
        let c = &mut self.candidates;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, l)| (i as u32, l / temp)));
        if let Some(k) = self.params.top_k.filter(|k| *k < c.len()) {
            c.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            c.truncate(k);
        }
        c.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        let mut probs = softmax_of(c);
        if let Some(top_p) = self.params.top_p.filter(|p| *p < 1.0) {
            let mut cum = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    cum += p;
                    cum >= top_p
                })
                .map_or(probs.len(), |i| i + 1);
            c.truncate(keep);
            probs = softmax_of(c);
        }
        if let Some(mass) = self.params.typical_p.filter(|p| *p < 1.0) {
            let entropy: f32 = probs
                .iter()
                .filter(|p| **p > 0.0)
                .map(|p| -p * p.ln())
                .sum();
            let mut order: Vec<usize> = (0..c.len()).collect();
            let surprise = |i: usize| (-probs[i].ln() - entropy).abs();
            order.sort_by(|a, b| surprise(*a).total_cmp(&surprise(*b)));
            let mut cum = 0.0;
            let mut keep = order.len();
            for (n, &i) in order.iter().enumerate() {
                cum += probs[i];
                if cum >= mass {
                    keep = n + 1;
                    break;
                }
            }
            let kept: Vec<(u32, f32)> = order[..keep].iter().map(|&i| c[i]).collect();
            *c = kept;
            probs = softmax_of(c);
        }
        let r: f32 = self.rng.random();
        let mut cum = 0.0;
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if r < cum {
                return c[i].0;
            }
        }
        c.last().map_or(0, |x| x.0)
    }
}

fn softmax_of(c: &[(u32, f32)]) -> Vec<f32> {
    let max = c.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = c.iter().map(|x| (x.1 - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// The `n` most likely tokens of a logits row with their log-probabilities
/// (`lse` from [`crate::cpu::ggml_numerics::log_sum_exp`]), most likely first; ties in id order.
pub fn top_logprobs(logits: &[f32], lse: f32, n: usize) -> Vec<(u32, f32)> {
    let n = n.min(logits.len());
    if n == 0 {
        return Vec::new();
    }
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (i, &l) in logits.iter().enumerate() {
        // Most of the vocabulary loses to the current n-th best at once.
        if best.len() == n && best[n - 1].1 >= l {
            continue;
        }
        let item = (i as u32, l);
        let at = best.partition_point(|x| order(x, &item).is_lt());
        best.insert(at, item);
        best.truncate(n);
    }
    best.into_iter().map(|(i, l)| (i, l - lse)).collect()
}

/// Index of the largest value; the first one on ties (as llama.cpp's
/// reference picks).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        (0..100).map(|i| ((i * 7919) % 101) as f32 / 10.0).collect()
    }

    #[test]
    fn greedy_is_argmax_and_penalty_changes_it() {
        let mut s = Sampler::new(SamplingParams::default());
        let l = logits();
        let best = argmax(&l);
        assert_eq!(s.sample(&mut l.clone(), &[]), best);
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: Some(100.0),
            ..Default::default()
        });
        assert_ne!(s.sample(&mut l.clone(), &[best]), best);
    }

    #[test]
    fn same_seed_same_tokens_and_top_k_one_is_greedy() {
        let p = SamplingParams {
            temperature: Some(1.5),
            top_p: Some(0.9),
            seed: Some(42),
            ..Default::default()
        };
        let run = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..50)
                .map(|_| s.sample(&mut logits(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&p), run(&p));
        let other = SamplingParams {
            seed: Some(43),
            ..p.clone()
        };
        assert_ne!(run(&p), run(&other));
        let k1 = SamplingParams {
            top_k: Some(1),
            temperature: Some(3.0),
            seed: Some(1),
            ..Default::default()
        };
        assert!(run(&k1).iter().all(|t| *t == argmax(&logits())));
    }

    #[test]
    fn top_k_and_typical_restrict_the_support() {
        let l = logits();
        let mut sorted: Vec<u32> = (0..100).collect();
        sorted.sort_by(|a, b| l[*b as usize].total_cmp(&l[*a as usize]));
        let mut s = Sampler::new(SamplingParams {
            top_k: Some(3),
            temperature: Some(10.0),
            seed: Some(7),
            ..Default::default()
        });
        for _ in 0..200 {
            assert!(sorted[..3].contains(&s.sample(&mut l.clone(), &[])));
        }
        let mut s = Sampler::new(SamplingParams {
            typical_p: Some(0.2),
            seed: Some(7),
            ..Default::default()
        });
        let picks: std::collections::HashSet<u32> =
            (0..200).map(|_| s.sample(&mut l.clone(), &[])).collect();
        assert!(picks.len() < 50, "typical_p kept {} tokens", picks.len());
    }

    #[test]
    fn bias_and_penalties_move_the_greedy_choice() {
        let l = logits();
        let best = argmax(&l);
        let mut s = Sampler::new(SamplingParams {
            logit_bias: vec![(3, 100.0)],
            ..Default::default()
        });
        assert_eq!(s.sample(&mut l.clone(), &[]), 3);
        let mut s = Sampler::new(SamplingParams {
            logit_bias: vec![(best, -100.0)],
            ..Default::default()
        });
        assert_ne!(s.sample(&mut l.clone(), &[]), best);
        // The penalties count generated tokens only: the first pick is the
        // plain argmax even when the prompt holds it, the second is not.
        for p in [
            SamplingParams {
                presence_penalty: Some(2.0),
                ..Default::default()
            },
            SamplingParams {
                frequency_penalty: Some(2.0),
                ..Default::default()
            },
        ] {
            let mut s = Sampler::new(p);
            assert_eq!(s.sample(&mut l.clone(), &[best]), best);
            assert_ne!(s.sample(&mut l.clone(), &[best]), best);
        }
    }

    #[test]
    fn top_logprobs_are_the_sorted_head_of_the_log_softmax() {
        let l = logits();
        let lse = crate::cpu::ggml_numerics::log_sum_exp(&l);
        let top = top_logprobs(&l, lse, 5);
        let mut all: Vec<(u32, f32)> = (0..l.len() as u32)
            .map(|i| (i, l[i as usize] - lse))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(top, all[..5]);
        assert!(top_logprobs(&l, lse, 0).is_empty());
        assert_eq!(top_logprobs(&l, lse, 1000).len(), l.len());
    }

    #[test]
    fn invalid_params_are_rejected() {
        for p in [
            SamplingParams {
                top_p: Some(0.0),
                ..Default::default()
            },
            SamplingParams {
                top_k: Some(0),
                ..Default::default()
            },
            SamplingParams {
                temperature: Some(-1.0),
                ..Default::default()
            },
            SamplingParams {
                repetition_penalty: Some(0.0),
                ..Default::default()
            },
        ] {
            assert!(p.validate().is_err(), "{p:?}");
        }
    }
}
