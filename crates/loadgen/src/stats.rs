//! The one percentile routine: exact, over all samples of a run.

use serde::{Deserialize, Serialize};

/// Summary of a sample set (`METRICS.md` percentiles), in the unit of the
/// field that holds it (`ttft_ms` holds milliseconds, `output_tokens` tokens).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub count: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Distribution {
    /// `None` for no samples. NaNs are ignored.
    pub fn of(mut samples: Vec<f64>) -> Option<Self> {
        samples.retain(|v| !v.is_nan());
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        Some(Self {
            count: n,
            mean: samples.iter().sum::<f64>() / n as f64,
            min: samples[0],
            max: samples[n - 1],
            p50: percentile(&samples, 0.50),
            p90: percentile(&samples, 0.90),
            p95: percentile(&samples, 0.95),
            p99: percentile(&samples, 0.99),
        })
    }
}

/// The `q` quantile (0..=1) of sorted samples, interpolating linearly between
/// the two nearest ranks (numpy's default; `p50` is the usual median, so it
/// matches Python's `statistics.median`).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_tails() {
        let d = Distribution::of(vec![4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(
            (d.count, d.min, d.max, d.mean, d.p50),
            (4, 1.0, 4.0, 2.5, 2.5)
        );
        let d = Distribution::of((1..=101).map(f64::from).collect()).unwrap();
        assert_eq!((d.p50, d.p90, d.p95, d.p99), (51.0, 91.0, 96.0, 100.0));
        assert!(Distribution::of(vec![f64::NAN]).is_none());
        assert_eq!(Distribution::of(vec![7.0]).unwrap().p99, 7.0);
    }
}
