//! Plot axes for `report.html`: which scale a set of values gets and where
//! its ticks go. Concurrency axes tick at the levels measured; value axes
//! tick at round numbers (1, 2 or 5 times a power of ten), on a log scale
//! where the values span more than 10x so that cheap and dear runs both read.

/// One axis: its data range, scale and tick values.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    lo: f64,
    hi: f64,
    pub log: bool,
    pub ticks: Vec<f64>,
}

/// The round step (1, 2 or 5 x 10^k) that cuts `span` into about `n` parts.
fn round_step(span: f64, n: f64) -> f64 {
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let m = raw / mag;
    let f = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    f * mag
}

impl Axis {
    /// An axis whose ticks are exactly `levels` (the load levels measured).
    pub fn levels(levels: &[f64]) -> Self {
        let mut ticks: Vec<f64> = levels.iter().copied().filter(|v| v.is_finite()).collect();
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        let (lo, hi) = match (ticks.first(), ticks.last()) {
            (Some(&a), Some(&b)) if b > a => (a, b),
            (Some(&a), _) => (a - 1.0, a + 1.0),
            _ => (0.0, 1.0),
        };
        Self {
            lo,
            hi,
            log: false,
            ticks,
        }
    }

    /// An axis for measured values: log scale where all are positive and
    /// they span more than 10x, else linear from zero (or the lowest value
    /// when some are negative), both with round ticks.
    pub fn values(values: &[f64]) -> Self {
        let v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let (min, max) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        if v.is_empty() {
            return Self::linear(0.0, 1.0);
        }
        if min > 0.0 && max / min > 10.0 {
            return Self::log(min, max);
        }
        Self::linear(min.min(0.0), max)
    }

    fn linear(min: f64, max: f64) -> Self {
        let (min, max) = if max - min < 1e-12 {
            (
                min - 1.0_f64.max(min.abs() * 0.1),
                max + 1.0_f64.max(max.abs() * 0.1),
            )
        } else {
            (min, max)
        };
        let step = round_step(max - min, 5.0);
        let lo = (min / step).floor() * step;
        let hi = (max / step).ceil() * step;
        let n = ((hi - lo) / step).round() as i64;
        let ticks = (0..=n).map(|k| lo + k as f64 * step).collect();
        Self {
            lo,
            hi,
            log: false,
            ticks,
        }
    }

    fn log(min: f64, max: f64) -> Self {
        let (a, b) = (min.log10().floor() as i32, max.log10().ceil() as i32);
        let mut ticks = Vec::new();
        for e in a..=b {
            let p = 10f64.powi(e);
            ticks.push(p);
            // Few decades: 2x and 5x as well, so the axis has enough labels.
            if b - a <= 2 && e < b {
                ticks.extend([2.0 * p, 5.0 * p]);
            }
        }
        Self {
            lo: 10f64.powi(a),
            hi: 10f64.powi(b),
            log: true,
            ticks,
        }
    }

    /// Where `v` lies on the axis, 0 at its start and 1 at its end.
    pub fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    /// A tick's label: as many decimals as the ticks' spacing needs, no more.
    pub fn label(&self, v: f64) -> String {
        let unit = if self.log {
            v
        } else {
            self.ticks
                .windows(2)
                .map(|w| w[1] - w[0])
                .fold(f64::INFINITY, f64::min)
        };
        let unit = if unit.is_finite() && unit > 0.0 {
            unit
        } else {
            v.abs().max(1.0)
        };
        let decimals = (-unit.log10().floor()).max(0.0) as usize;
        format!("{v:.decimals$}")
    }

    /// "linear" or "log", as the SVG's data attribute says.
    pub fn scale(&self) -> &'static str {
        if self.log {
            "log"
        } else {
            "linear"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_tick_where_measured() {
        let a = Axis::levels(&[5.0, 1.0, 20.0, 10.0, 5.0]);
        assert_eq!(a.ticks, vec![1.0, 5.0, 10.0, 20.0]);
        assert_eq!(a.label(5.0), "5");
        assert_eq!(a.frac(1.0), 0.0);
        assert_eq!(a.frac(20.0), 1.0);
    }

    #[test]
    fn linear_ticks_are_round_and_cover_the_values() {
        let a = Axis::values(&[50.0, 449.9, 120.0]);
        assert!(!a.log);
        assert_eq!(a.ticks, vec![0.0, 100.0, 200.0, 300.0, 400.0, 500.0]);
        assert_eq!(a.label(100.0), "100");
        let b = Axis::values(&[0.31, 0.74]);
        assert_eq!(b.ticks.first(), Some(&0.0));
        assert!(b.ticks.last().unwrap() >= &0.74);
        assert_eq!(b.label(b.ticks[1]), "0.2");
    }

    #[test]
    fn wide_positive_spans_go_log() {
        let a = Axis::values(&[0.077, 4.38, 31.5]);
        assert!(a.log);
        assert_eq!(a.ticks, vec![0.01, 0.1, 1.0, 10.0, 100.0]);
        assert_eq!(a.label(0.01), "0.01");
        assert_eq!(a.label(10.0), "10");
        assert!((a.frac(1.0) - 0.5).abs() < 1e-12);
        let b = Axis::values(&[3.0, 45.0]);
        assert_eq!(b.ticks, vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
    }

    #[test]
    fn one_value_still_has_a_range() {
        let a = Axis::values(&[7.0]);
        assert!(a.frac(7.0) > 0.0 && a.frac(7.0) < 1.0);
        let l = Axis::levels(&[5.0]);
        assert_eq!(l.ticks, vec![5.0]);
        assert_eq!(l.frac(5.0), 0.5);
    }
}
