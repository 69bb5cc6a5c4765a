//! Arrival processes for the open loop.

use std::time::Duration;

use rand::SeedableRng;
use rand_distr::{Distribution as _, Exp};
use serde::{Deserialize, Serialize};

/// How arrival times are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Exponential gaps (a Poisson process): the realistic default.
    Poisson,
    /// Evenly spaced.
    Constant,
}

impl Arrival {
    /// Parses `poisson` or `constant`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "poisson" => Some(Self::Poisson),
            "constant" => Some(Self::Constant),
            _ => None,
        }
    }

    /// The flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poisson => "poisson",
            Self::Constant => "constant",
        }
    }
}

/// Arrival offsets from the level's start: the first at 0, then gaps.
#[derive(Debug)]
pub struct ArrivalSchedule {
    kind: Arrival,
    rate_s: f64,
    next: f64,
    count: u64,
    exp: Option<Exp<f64>>,
    rng: rand::rngs::StdRng,
}

impl ArrivalSchedule {
    /// A schedule of `rate_s` arrivals per second (must be > 0), seeded.
    pub fn new(kind: Arrival, rate_s: f64, seed: u64) -> Self {
        Self {
            kind,
            rate_s,
            next: 0.0,
            count: 0,
            exp: Exp::new(rate_s).ok(),
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }
}

impl Iterator for ArrivalSchedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let at = match self.kind {
            // k / rate, not a running sum, so rounding never drifts.
            Arrival::Constant => self.count as f64 / self.rate_s,
            Arrival::Poisson => {
                let at = self.next;
                self.next += self.exp.as_ref()?.sample(&mut self.rng);
                at
            }
        };
        self.count += 1;
        Duration::try_from_secs_f64(at).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_evenly_spaced() {
        let at: Vec<_> = ArrivalSchedule::new(Arrival::Constant, 4.0, 0)
            .take(3)
            .collect();
        assert_eq!(
            at,
            [
                Duration::ZERO,
                Duration::from_millis(250),
                Duration::from_millis(500)
            ]
        );
    }

    #[test]
    fn poisson_has_the_asked_rate() {
        let at: Vec<_> = ArrivalSchedule::new(Arrival::Poisson, 50.0, 1)
            .take(20_001)
            .collect();
        let rate = 20_000.0 / at[20_000].as_secs_f64();
        assert!((rate - 50.0).abs() < 1.5, "rate {rate}");
        assert!(at.windows(2).all(|w| w[0] <= w[1]));
    }
}
