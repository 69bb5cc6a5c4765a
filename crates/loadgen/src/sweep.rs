//! `--sweep`: measure saturation first (a closed-loop level at high
//! concurrency), then open-loop rates spread below it, as
//! inference-benchmarker does.

/// `steps` rates evenly spaced in (0, saturation): `saturation x i / (steps + 1)`.
pub fn sweep_rates(saturation_request_rate_s: f64, steps: u32) -> Vec<f64> {
    if !(saturation_request_rate_s.is_finite() && saturation_request_rate_s > 0.0) {
        return Vec::new();
    }
    (1..=steps)
        .map(|i| {
            let r = saturation_request_rate_s * f64::from(i) / f64::from(steps + 1);
            // Three significant digits: rates people can read and type again.
            let scale = 10f64.powi(2 - r.log10().floor() as i32);
            (r * scale).round() / scale
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_spread_below_saturation() {
        assert_eq!(sweep_rates(10.0, 4), [2.0, 4.0, 6.0, 8.0]);
        assert_eq!(sweep_rates(1.0, 2), [0.333, 0.667]);
        assert!(sweep_rates(0.0, 3).is_empty());
    }
}
