//! The performance model: one deployment (model x quantization x hardware x
//! tensor-parallel degree) under closed-loop concurrency `c`, turned into
//! the study's median ms/token and output throughput.
//!
//! One forward pass over `t` new tokens of `s` sequences holding `k` tokens
//! of context each, on `n` devices:
//!
//! ```text
//! pass(t) = overhead                       per layer and per pass (kernel launches, scheduling)
//!         + (W/n + s*k*kv/n) / (B * e_mem)  weights and KV cache streamed at memory bandwidth B
//!         + t * F / n / (C * e_comp)         matmuls at compute throughput C (F = 2 x weights;
//!                                            N CPU cores count as N^par, 0 < par < 1)
//!         + comm(t)                          2 all-reduces per layer when n > 1
//! comm(t) = 2L * (latency + t * hidden * 2 bytes * k(n) / (link * e_link))
//!           k(n) = n - 1 on a shared PCIe fabric, 2(n-1)/n through a switch
//! ```
//!
//! A request of `p` prompt and `g` new tokens, with `c` users in a closed
//! loop (continuous batching keeps all `c` in the decode batch): its own
//! prefill, `g` decode steps of batch `c`, and the prefills of the `c - 1`
//! requests that arrive during its life, which pause the batch:
//!
//! ```text
//! T(c)          = pass_prefill(p) + g * step(c) + (c - 1) * (psi * fixed + p * per_token)
//! ms_per_token  = T(c) / g                     (server side: queue excluded, prefill included)
//! throughput    = c * g / (rho * T(c))         (rho: request latency over the median's)
//! ```
//!
//! The `e_*`, `overhead`, `latency`, `psi` and `rho` are the free factors
//! ([`Factors`]), fitted to measured runs by [`crate::fit`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hardware::{Hardware, Interconnect};
use crate::quant::Quant;
use crate::shape::Shape;

/// The request shape of the closed loop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub prompt_tokens: u32,
    pub new_tokens: u32,
}

impl Default for Workload {
    /// The 2023 study's request: "Write a 500 word long story about
    /// llamas" (12 Llama tokens with BOS), 50 new tokens.
    fn default() -> Self {
        Self {
            prompt_tokens: 12,
            new_tokens: 50,
        }
    }
}

/// One point to predict.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub shape: Shape,
    pub quant: Quant,
    pub hardware: Hardware,
    /// Devices the model is split over (tensor parallelism), 1..=devices.
    pub tp: u32,
    /// Concurrent requests (closed loop).
    pub concurrency: u32,
    pub workload: Workload,
}

/// Memory of one device for a candidate, in GiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub weights_gib: f64,
    /// KV cache of `concurrency` full-length sequences.
    pub kv_gib: f64,
    /// Working memory the server keeps (activations, CUDA context): 10%.
    pub reserved_gib: f64,
    pub available_gib: f64,
}

impl Memory {
    pub fn fits(&self) -> bool {
        self.weights_gib + self.kv_gib + self.reserved_gib <= self.available_gib
    }
}

/// The model's answer for one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub memory: Memory,
    /// `None` when it does not fit: nothing is predicted then.
    pub ms_per_token: Option<f64>,
    pub output_throughput_tok_s: Option<f64>,
}

/// Fitted efficiency factors, stored as natural logs. A key is a global
/// factor (`mem`) or its adjustment for one group (`mem@A10G`,
/// `comp@tgi:gptq`, `clat@pcie`); a missing key is a factor of 1, so a
/// group no calibration run covered takes the global value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Factors {
    pub log: BTreeMap<String, f64>,
}

/// Global factors: unregularized in the fit. The starting values are the
/// physical defaults (efficiency 1, 0.2 ms per layer, 5 ms per pass, 10 µs
/// per all-reduce, one extra pass per arriving request, rho 1).
pub const GLOBALS: [&str; 8] = ["mem", "comp", "over", "ostep", "clat", "cbw", "psi", "rho"];

impl Factors {
    fn f(&self, base: &str, groups: &[&str]) -> f64 {
        let mut v = self.log.get(base).copied().unwrap_or(0.0);
        for g in groups {
            v += self.log.get(&format!("{base}@{g}")).copied().unwrap_or(0.0);
        }
        v.exp()
    }

    /// The factor's multiplier as used (global x groups).
    pub fn value(&self, key: &str) -> f64 {
        self.log.get(key).copied().unwrap_or(0.0).exp()
    }
}

/// The key of a serving software and quantization kernel.
pub fn kernel(c: &Candidate) -> String {
    format!("{}:{}", c.hardware.software(), c.quant.name)
}

/// Every factor key a candidate's prediction reads.
pub fn keys(c: &Candidate) -> Vec<String> {
    let mut k: Vec<String> = GLOBALS.iter().map(|s| s.to_string()).collect();
    let kern = kernel(c);
    let fam = &c.hardware.family;
    k.extend([
        format!("mem@{fam}"),
        format!("comp@{fam}"),
        format!("mem@{kern}"),
        format!("comp@{kern}"),
        format!("over@{kern}"),
    ]);
    if c.hardware.cores.is_some() {
        k.push(format!("par@{fam}"));
    }
    if let Some((ic, _)) = c.hardware.interconnect.filter(|_| c.tp > 1) {
        k.push(format!("clat@{}", ic.name()));
        k.push(format!("cbw@{}", ic.name()));
    }
    k
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Memory per device: weights split over `tp`, the KV cache of every
/// sequence at full length, and 10% of the device kept back.
pub fn memory(c: &Candidate) -> Memory {
    let n = f64::from(c.tp.max(1));
    let tokens = f64::from(c.workload.prompt_tokens + c.workload.new_tokens);
    let available = c.hardware.memory_bytes_per_device;
    Memory {
        weights_gib: c.shape.resident_bytes(&c.quant) / n / GIB,
        kv_gib: f64::from(c.concurrency) * tokens * c.shape.kv_bytes_per_token() / n / GIB,
        reserved_gib: 0.1 * available / GIB,
        available_gib: available / GIB,
    }
}

/// Times of one forward pass, in seconds.
struct Pass {
    /// All of it.
    total: f64,
    /// What does not depend on the number of tokens: overhead, weights,
    /// all-reduce latency.
    fixed: f64,
    /// Per token: matmuls and all-reduce bytes.
    per_token: f64,
}

/// The predicted seconds of a request, the model's core: `T(c)` of the
/// module docs.
fn request_seconds(c: &Candidate, f: &Factors) -> f64 {
    let kern = kernel(c);
    let fam = c.hardware.family.as_str();
    let s = &c.shape;
    let n = f64::from(c.tp.max(1));
    let layers = s.n_layer as f64;
    let (p, g) = (
        f64::from(c.workload.prompt_tokens),
        f64::from(c.workload.new_tokens.max(1)),
    );
    let bandwidth = c.hardware.bandwidth_bytes_s * f.f("mem", &[fam, &kern]);
    // N cores give N^par cores' worth of compute: par in (0, 1), 0.95 at
    // the start (near-linear), lower where threads contend (shared caches,
    // other jobs on the machine).
    let scaling = c.hardware.cores.map_or(1.0, |n| {
        let par = 1.0 / (1.0 + (-(f.f("par", &[fam]).ln() + 3.0)).exp());
        f64::from(n.max(1)).powf(par - 1.0)
    });
    let compute = if c.quant.int8_math {
        c.hardware.int8_ops
    } else {
        c.hardware.fp16_flops
    } * f.f("comp", &[fam, &kern])
        * scaling;
    let overhead = f.f("over", &[&kern]) * 2e-4 * layers + f.f("ostep", &[]) * 5e-3;
    let (latency, per_token_comm) = match c.hardware.interconnect.filter(|_| c.tp > 1) {
        Some((ic, link)) => {
            let share = match ic {
                Interconnect::Pcie => n - 1.0,
                Interconnect::Nvlink => 2.0 * (n - 1.0) / n,
            };
            let link = link * f.f("cbw", &[ic.name()]);
            (
                2.0 * layers * 1e-5 * f.f("clat", &[ic.name()]),
                2.0 * layers * s.hidden as f64 * 2.0 * share / link,
            )
        }
        None => (0.0, 0.0),
    };
    let pass = |tokens: f64, kv_tokens: f64| {
        let fixed = overhead + s.streamed_bytes(&c.quant) / n / bandwidth + latency;
        let per_token = s.flops_per_token() / n / compute + per_token_comm;
        let kv = kv_tokens * s.kv_bytes_per_token() / n / bandwidth;
        Pass {
            total: fixed + kv + tokens * per_token,
            fixed,
            per_token,
        }
    };
    let users = f64::from(c.concurrency.max(1));
    // Mean context of a sequence in the decode batch: its prompt and half its output.
    let step = pass(users, users * (p + g / 2.0));
    let prefill = pass(p, 0.0);
    // At most one extra pass per arriving request; the cap keeps
    // throughput non-decreasing in c (T(c) = a + b*c with a > 0).
    let psi = f.f("psi", &[]).min(1.0);
    prefill.total + g * step.total + (users - 1.0) * (psi * prefill.fixed + p * prefill.per_token)
}

/// Predicts one candidate; one that does not fit in memory gets its memory
/// figures and no latency or throughput.
pub fn predict(c: &Candidate, f: &Factors) -> Prediction {
    let memory = memory(c);
    if !memory.fits() {
        return Prediction {
            memory,
            ms_per_token: None,
            output_throughput_tok_s: None,
        };
    }
    let t = request_seconds(c, f);
    let g = f64::from(c.workload.new_tokens.max(1));
    Prediction {
        memory,
        ms_per_token: Some(t / g * 1e3),
        output_throughput_tok_s: Some(f64::from(c.concurrency.max(1)) * g / (t * f.f("rho", &[]))),
    }
}

/// Predicts ignoring memory (the fit calibrates on runs that did run).
pub fn predict_unchecked(c: &Candidate, f: &Factors) -> (f64, f64) {
    let t = request_seconds(c, f);
    let g = f64::from(c.workload.new_tokens.max(1));
    (
        t / g * 1e3,
        f64::from(c.concurrency.max(1)) * g / (t * f.f("rho", &[])),
    )
}

#[cfg(test)]
mod tests {
    //! Monotonicity where physics says so, over a deterministic sweep of
    //! models, quantizations, instances, degrees, loads and factor sets
    //! (the defaults and pseudo-random ones, every factor within e^-2..e^2).
    use super::*;
    use crate::hardware::Catalog;

    const MODELS: [&str; 3] = ["llama-2-7b", "llama-2-13b", "llama-2-70b"];
    const QUANTS: [&str; 4] = ["none", "gptq", "q4_1", "q8_0"];
    const INSTANCES: [&str; 6] = [
        "ml.g5.2xlarge",
        "ml.g5.12xlarge",
        "ml.g5.48xlarge",
        "ml.p4d.24xlarge",
        "cpu-1",
        "cpu-2",
    ];
    const LEVELS: [u32; 8] = [1, 2, 5, 10, 20, 40, 64, 128];

    /// Factor sets: the defaults and 6 draws of a fixed linear congruential sequence.
    fn factor_sets() -> Vec<Factors> {
        let mut keys: Vec<String> = GLOBALS.iter().map(|s| s.to_string()).collect();
        for g in ["A10G", "A100-SXM4-40GB", "cpu"] {
            keys.push(format!("mem@{g}"));
            keys.push(format!("comp@{g}"));
        }
        for k in [
            "tgi:none",
            "tgi:gptq",
            "servebench:q4_1",
            "tgi:q4_1",
            "servebench:none",
        ] {
            for b in ["mem", "comp", "over"] {
                keys.push(format!("{b}@{k}"));
            }
        }
        keys.push("par@cpu".into());
        for ic in ["pcie", "nvlink"] {
            keys.push(format!("clat@{ic}"));
            keys.push(format!("cbw@{ic}"));
        }
        let mut state: u64 = 0x2023;
        let mut sets = vec![Factors::default()];
        for _ in 0..6 {
            let log = keys
                .iter()
                .map(|k| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    (
                        k.clone(),
                        ((state >> 33) as f64 / (1u64 << 31) as f64) * 4.0 - 2.0,
                    )
                })
                .collect();
            sets.push(Factors { log });
        }
        sets
    }

    fn candidates() -> Vec<Candidate> {
        let hw = Catalog::embedded();
        let mut out = Vec::new();
        for m in MODELS {
            for q in QUANTS {
                for i in INSTANCES {
                    let h = hw.hardware(i).unwrap();
                    for tp in [1, 2, 4, 8].into_iter().filter(|&t| t <= h.devices) {
                        for &c in &LEVELS {
                            out.push(Candidate {
                                shape: Shape::resolve(m).unwrap(),
                                quant: Quant::parse(q).unwrap(),
                                hardware: h.clone(),
                                tp,
                                concurrency: c,
                                workload: Workload::default(),
                            });
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn more_bandwidth_is_never_slower() {
        for f in factor_sets() {
            for c in candidates() {
                let mut fast = c.clone();
                fast.hardware.bandwidth_bytes_s *= 1.5;
                if let (Some(a), Some(b)) = (
                    predict(&c, &f).ms_per_token,
                    predict(&fast, &f).ms_per_token,
                ) {
                    assert!(
                        b <= a,
                        "{} {}: {b} > {a}",
                        c.hardware.instance,
                        c.shape.name
                    );
                    let (ta, tb) = (
                        predict(&c, &f).output_throughput_tok_s.unwrap(),
                        predict(&fast, &f).output_throughput_tok_s.unwrap(),
                    );
                    assert!(tb >= ta);
                }
            }
        }
    }

    #[test]
    fn a_larger_model_is_never_faster_on_the_same_hardware() {
        for f in factor_sets() {
            let all = candidates();
            for c in all.iter().filter(|c| c.shape.name != "llama-2-70b") {
                let bigger = MODELS[MODELS.iter().position(|m| *m == c.shape.name).unwrap() + 1];
                let mut b = c.clone();
                b.shape = Shape::resolve(bigger).unwrap();
                let (small, large) = (predict(c, &f), predict(&b, &f));
                if let (Some(s), Some(l)) = (small.ms_per_token, large.ms_per_token) {
                    assert!(
                        l >= s,
                        "{} on {} c={}: {l} < {s}",
                        bigger,
                        c.hardware.instance,
                        c.concurrency
                    );
                    assert!(large.output_throughput_tok_s <= small.output_throughput_tok_s);
                }
                // What does not fit small does not fit large either.
                assert!(small.memory.fits() || !large.memory.fits());
            }
        }
    }

    #[test]
    fn throughput_does_not_fall_with_concurrency_until_memory_runs_out() {
        for f in factor_sets() {
            let all = candidates();
            for w in all.windows(2) {
                let (a, b) = (&w[0], &w[1]);
                if a.shape != b.shape
                    || a.hardware != b.hardware
                    || a.tp != b.tp
                    || a.quant != b.quant
                {
                    continue;
                }
                let (pa, pb) = (predict(a, &f), predict(b, &f));
                match (pa.output_throughput_tok_s, pb.output_throughput_tok_s) {
                    (Some(x), Some(y)) => assert!(
                        y >= x * (1.0 - 1e-12),
                        "{} {} {} tp{} c {}->{}: {x} -> {y}",
                        a.shape.name,
                        a.quant.name,
                        a.hardware.instance,
                        a.tp,
                        a.concurrency,
                        b.concurrency
                    ),
                    // Once it stops fitting, more load does not fit either.
                    (None, Some(_)) => {
                        panic!("fits at c={} but not at c={}", b.concurrency, a.concurrency)
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn a_70b_in_fp16_needs_more_than_one_a10g() {
        let hw = Catalog::embedded();
        let c = Candidate {
            shape: Shape::resolve("llama-2-70b").unwrap(),
            quant: Quant::parse("none").unwrap(),
            hardware: hw.hardware("ml.g5.2xlarge").unwrap(),
            tp: 1,
            concurrency: 1,
            workload: Workload::default(),
        };
        let p = predict(&c, &Factors::default());
        assert!(p.ms_per_token.is_none() && !p.memory.fits());
        assert!(p.memory.weights_gib > 120.0 && p.memory.available_gib == 24.0);
        let mut on_p4d = c.clone();
        on_p4d.hardware = hw.hardware("ml.p4d.24xlarge").unwrap();
        on_p4d.tp = 8;
        assert!(predict(&on_p4d, &Factors::default()).ms_per_token.is_some());
    }
}
