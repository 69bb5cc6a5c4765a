//! Choosing the next token from logits: repetition penalty, then
//! temperature, top-k, top-p and typical-p (in the order of
//! transformers/TGI's logits warpers), then greedy or seeded sampling.

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
        Ok(())
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
        }
    }

    /// The seed in use (reported back to clients, as TGI does).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Picks a token. `history` is prompt plus generated ids (for the
    /// repetition penalty). `logits` is modified.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
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
