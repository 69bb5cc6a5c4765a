//! How far to trust the model: refit without each held-out group of runs
//! and measure the errors on that group.

use serde::Serialize;

use crate::error::Result;
use crate::fit::{fit, Observation, Residual};
use crate::perf::Factors;

/// What a held-out group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holdout {
    /// Each run alone.
    Row,
    /// Every run on one instance type.
    Instance,
    /// Every run of one model.
    Model,
    /// Every run at one concurrency.
    Level,
}

impl std::str::FromStr for Holdout {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "row" => Ok(Self::Row),
            "instance" => Ok(Self::Instance),
            "model" => Ok(Self::Model),
            "level" => Ok(Self::Level),
            other => Err(format!(
                "`{other}`: holdout is row, instance, model or level"
            )),
        }
    }
}

impl Holdout {
    fn key(self, i: usize, o: &Observation) -> String {
        match self {
            Self::Row => format!("{} c={} #{i}", o.label, o.candidate.concurrency),
            Self::Instance => o.candidate.hardware.instance.clone(),
            Self::Model => o.candidate.shape.name.clone(),
            Self::Level => o.candidate.concurrency.to_string(),
        }
    }
}

/// Absolute percentage errors: median and 90th percentile.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Errors {
    pub ms_per_token_median_pct: f64,
    pub ms_per_token_p90_pct: f64,
    pub throughput_median_pct: f64,
    pub throughput_p90_pct: f64,
}

/// One held-out group's predictions.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    pub residuals: Vec<Residual>,
    pub errors: Errors,
}

/// The outcome of a validation.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub groups: Vec<Group>,
    /// Over every held-out run.
    pub errors: Errors,
}

/// The `q` quantile (0..=1) of `v`, linear between order statistics.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Median and p90 absolute errors of `residuals`, in percent.
pub fn errors(residuals: &[Residual]) -> Errors {
    let (ms, tok): (Vec<f64>, Vec<f64>) = residuals
        .iter()
        .map(|r| {
            let (a, b) = r.errors();
            (a.abs() * 100.0, b.abs() * 100.0)
        })
        .unzip();
    Errors {
        ms_per_token_median_pct: quantile(&ms, 0.5),
        ms_per_token_p90_pct: quantile(&ms, 0.9),
        throughput_median_pct: quantile(&tok, 0.5),
        throughput_p90_pct: quantile(&tok, 0.9),
    }
}

/// Refits without each group of `holdout` and predicts it.
pub fn validate(observations: &[Observation], holdout: Holdout) -> Result<Validation> {
    // Every refit starts from the full fit: faster, and the same optimum.
    let full = fit(observations, None)?.factors;
    let mut names: Vec<String> = Vec::new();
    let keys: Vec<String> = observations
        .iter()
        .enumerate()
        .map(|(i, o)| holdout.key(i, o))
        .collect();
    for k in &keys {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    let mut groups = Vec::new();
    let mut all = Vec::new();
    for name in names {
        let (test, train): (Vec<_>, Vec<_>) = observations
            .iter()
            .zip(&keys)
            .partition(|(_, k)| **k == name);
        let train: Vec<Observation> = train.into_iter().map(|(o, _)| o.clone()).collect();
        let factors: Factors = fit(&train, Some(&full))?.factors;
        let residuals: Vec<Residual> = test
            .into_iter()
            .map(|(o, _)| Residual::of(o, &factors))
            .collect();
        all.extend(residuals.iter().cloned());
        groups.push(Group {
            errors: errors(&residuals),
            name,
            residuals,
        });
    }
    Ok(Validation {
        errors: errors(&all),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, 2.0], 0.5), 1.5);
        assert!((quantile(&(1..=11).map(f64::from).collect::<Vec<_>>(), 0.9) - 10.0).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
