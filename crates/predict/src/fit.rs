//! Fitting the model's free factors to measured runs: robust (Huber)
//! least squares on log errors of ms/token and throughput, with a ridge
//! prior pulling every group adjustment (`mem@A10G`, ...) towards 1, so
//! that a group with few runs stays near the global value and a group with
//! none takes it. Levenberg-Marquardt with a finite-difference Jacobian:
//! a few dozen parameters, no linear-algebra crate needed.

use serde::Serialize;

use crate::error::{PredictError, Result};
use crate::perf::{self, Candidate, Factors, GLOBALS};

/// One measured run.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub candidate: Candidate,
    /// Median ms/token as measured (server side where known).
    pub ms_per_token: f64,
    pub output_throughput_tok_s: f64,
    /// A label for printing (the deployment's name).
    pub label: String,
}

/// How hard group adjustments are pulled to 1 (in log units per residual).
const RIDGE: f64 = 0.1;
/// Log errors beyond this (about 10%) count linearly, not squared: an odd
/// run cannot drag the fit.
const HUBER: f64 = 0.1;

/// A fit's outcome: the factors and each run's errors.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub factors: Factors,
    pub residuals: Vec<Residual>,
}

/// One run's prediction against its measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Residual {
    pub label: String,
    pub concurrency: u32,
    pub measured_ms_per_token: f64,
    pub predicted_ms_per_token: f64,
    pub measured_tok_s: f64,
    pub predicted_tok_s: f64,
}

impl Residual {
    /// What `factors` predict for a measured run.
    pub fn of(o: &Observation, factors: &Factors) -> Self {
        let (ms, tok_s) = perf::predict_unchecked(&o.candidate, factors);
        Self {
            label: o.label.clone(),
            concurrency: o.candidate.concurrency,
            measured_ms_per_token: o.ms_per_token,
            predicted_ms_per_token: ms,
            measured_tok_s: o.output_throughput_tok_s,
            predicted_tok_s: tok_s,
        }
    }

    /// `(predicted - measured) / measured` for ms/token and throughput.
    pub fn errors(&self) -> (f64, f64) {
        (
            self.predicted_ms_per_token / self.measured_ms_per_token - 1.0,
            self.predicted_tok_s / self.measured_tok_s - 1.0,
        )
    }
}

/// The parameter names `observations` touch: globals first, then groups.
fn parameter_keys(observations: &[Observation]) -> Vec<String> {
    let mut keys: Vec<String> = GLOBALS.iter().map(|s| s.to_string()).collect();
    let mut groups: Vec<String> = observations
        .iter()
        .flat_map(|o| perf::keys(&o.candidate))
        .filter(|k| k.contains('@'))
        .collect();
    groups.sort();
    groups.dedup();
    keys.extend(groups);
    keys
}

fn factors_of(keys: &[String], theta: &[f64]) -> Factors {
    Factors {
        log: keys.iter().cloned().zip(theta.iter().copied()).collect(),
    }
}

fn residuals(keys: &[String], theta: &[f64], obs: &[Observation]) -> Vec<f64> {
    let f = factors_of(keys, theta);
    let mut r = Vec::with_capacity(obs.len() * 2 + keys.len());
    for o in obs {
        let (ms, tok_s) = perf::predict_unchecked(&o.candidate, &f);
        r.push((ms / o.ms_per_token).ln());
        r.push((tok_s / o.output_throughput_tok_s).ln());
    }
    for (k, t) in keys.iter().zip(theta) {
        if k.contains('@') {
            r.push(RIDGE * t);
        }
    }
    r
}

fn huber_cost(r: &[f64]) -> f64 {
    r.iter()
        .map(|&x| {
            let a = x.abs();
            if a <= HUBER {
                0.5 * x * x
            } else {
                HUBER * a - 0.5 * HUBER * HUBER
            }
        })
        .sum()
}

/// Solves `a x = b` (symmetric positive definite) by Gaussian elimination
/// with partial pivoting; `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (i, row) in rest.iter_mut().enumerate() {
            let m = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= m * p;
            }
            b[col + 1 + i] -= m * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| a[i][k] * x[k]).sum();
        x[i] = (b[i] - s) / a[i][i];
    }
    Some(x)
}

/// Fits the factors to `observations`, starting from `start` (or the
/// physical defaults).
pub fn fit(observations: &[Observation], start: Option<&Factors>) -> Result<Fit> {
    let need = 3;
    let usable: Vec<Observation> = observations
        .iter()
        .filter(|o| {
            o.ms_per_token.is_finite()
                && o.ms_per_token > 0.0
                && o.output_throughput_tok_s.is_finite()
                && o.output_throughput_tok_s > 0.0
        })
        .cloned()
        .collect();
    if usable.len() < need {
        return Err(PredictError::TooFewRuns {
            need,
            got: usable.len(),
        });
    }
    let keys = parameter_keys(&usable);
    let mut theta: Vec<f64> = keys
        .iter()
        .map(|k| start.and_then(|s| s.log.get(k).copied()).unwrap_or(0.0))
        .collect();
    let mut r = residuals(&keys, &theta, &usable);
    let mut cost = huber_cost(&r);
    let mut mu = 1e-3;
    let h = 1e-6;
    for _ in 0..200 {
        // Huber as iteratively reweighted least squares.
        let w: Vec<f64> = r
            .iter()
            .map(|x| {
                if x.abs() <= HUBER {
                    1.0
                } else {
                    HUBER / x.abs()
                }
            })
            .collect();
        let jac: Vec<Vec<f64>> = (0..theta.len())
            .map(|j| {
                let mut t = theta.clone();
                t[j] += h;
                residuals(&keys, &t, &usable)
                    .iter()
                    .zip(&r)
                    .map(|(a, b)| (a - b) / h)
                    .collect()
            })
            .collect();
        let n = theta.len();
        let mut jtj = vec![vec![0.0; n]; n];
        let mut jtr = vec![0.0; n];
        for a in 0..n {
            for b in a..n {
                let s: f64 = (0..r.len()).map(|i| w[i] * jac[a][i] * jac[b][i]).sum();
                jtj[a][b] = s;
                jtj[b][a] = s;
            }
            jtr[a] = -(0..r.len()).map(|i| w[i] * jac[a][i] * r[i]).sum::<f64>();
        }
        let mut improved = false;
        for _ in 0..12 {
            let mut a = jtj.clone();
            for (i, row) in a.iter_mut().enumerate() {
                row[i] += mu * (jtj[i][i] + 1e-9);
            }
            let Some(step) = solve(a, jtr.clone()) else {
                mu *= 10.0;
                continue;
            };
            let t: Vec<f64> = theta.iter().zip(&step).map(|(a, b)| a + b).collect();
            let rt = residuals(&keys, &t, &usable);
            let c = huber_cost(&rt);
            if c.is_finite() && c < cost {
                let small = step.iter().all(|s| s.abs() < 1e-7) || cost - c < 1e-12;
                theta = t;
                r = rt;
                cost = c;
                mu = (mu / 3.0).max(1e-9);
                improved = !small;
                break;
            }
            mu *= 4.0;
        }
        if !improved {
            break;
        }
    }
    let factors = factors_of(&keys, &theta);
    let residuals = usable.iter().map(|o| Residual::of(o, &factors)).collect();
    Ok(Fit { factors, residuals })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_small_system() {
        let x = solve(vec![vec![4.0, 1.0], vec![1.0, 3.0]], vec![1.0, 2.0]).unwrap();
        assert!((4.0 * x[0] + x[1] - 1.0).abs() < 1e-12);
        assert!((x[0] + 3.0 * x[1] - 2.0).abs() < 1e-12);
        assert!(solve(vec![vec![0.0]], vec![1.0]).is_none());
    }
}
