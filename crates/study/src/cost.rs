//! The cost formulas of `METRICS.md`, written once.

use serde::{Deserialize, Serialize};

/// An on-demand price in US dollars per hour.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UsdPerHour(pub f64);

/// Output tokens per second.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokensPerSecond(pub f64);

/// `minutes_per_1m_tokens = 1e6 / output_throughput_tok_s / 60`; `None`
/// when nothing was generated (the time would be infinite).
pub fn minutes_per_1m_tokens(throughput: TokensPerSecond) -> Option<f64> {
    (throughput.0.is_finite() && throughput.0 > 0.0).then(|| 1e6 / throughput.0 / 60.0)
}

/// `cost_per_1m_tokens_usd = minutes_per_1m_tokens / 60 x price_per_hour_usd`.
pub fn cost_per_1m_tokens_usd(minutes_per_1m_tokens: f64, price: UsdPerHour) -> f64 {
    minutes_per_1m_tokens / 60.0 * price.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_studys_example_to_the_cent() {
        // 7B on ml.g5.12xlarge at 20 users in the 2023 CSV.
        let minutes = minutes_per_1m_tokens(TokensPerSecond(449.942_302_723_120_5)).unwrap();
        assert_eq!(format!("{minutes:.2}"), "37.04");
        let usd = cost_per_1m_tokens_usd(minutes, UsdPerHour(7.09));
        assert_eq!(format!("{usd:.2}"), "4.38");
    }

    #[test]
    fn nothing_generated_has_no_time() {
        assert_eq!(minutes_per_1m_tokens(TokensPerSecond(0.0)), None);
        assert_eq!(minutes_per_1m_tokens(TokensPerSecond(f64::NAN)), None);
        assert_eq!(
            minutes_per_1m_tokens(TokensPerSecond(1000.0)),
            Some(1e6 / 1000.0 / 60.0)
        );
    }
}
