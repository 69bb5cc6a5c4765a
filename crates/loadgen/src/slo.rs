//! Service-level objectives (`--slo ttft_ms<=500`) and the per-request check
//! behind `goodput_s`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::LoadgenError;
use crate::record::{Outcome, RequestRecord};
use crate::units::ms;

/// A per-request metric an objective can bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloMetric {
    TtftMs,
    TpotMs,
    E2eMs,
    MsPerToken,
    ServerMsPerToken,
    QueueClientMs,
    OutputTokens,
}

const METRICS: [(&str, SloMetric); 7] = [
    ("ttft_ms", SloMetric::TtftMs),
    ("tpot_ms", SloMetric::TpotMs),
    ("e2e_ms", SloMetric::E2eMs),
    ("ms_per_token", SloMetric::MsPerToken),
    ("server_ms_per_token", SloMetric::ServerMsPerToken),
    ("queue_client_ms", SloMetric::QueueClientMs),
    ("output_tokens", SloMetric::OutputTokens),
];

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloOp {
    Le,
    Lt,
    Ge,
    Gt,
}

/// `metric op threshold`, e.g. `ttft_ms<=500`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    pub metric: SloMetric,
    pub op: SloOp,
    pub threshold: f64,
}

impl Slo {
    /// Whether a request met it. A failed request, or one where the metric is
    /// undefined (`ttft_ms` without streaming, `tpot_ms` of one token), does
    /// not: goodput counts only what was shown to be good.
    pub fn met_by(&self, r: &RequestRecord) -> bool {
        if r.outcome != Outcome::Success {
            return false;
        }
        let value = match self.metric {
            SloMetric::TtftMs => r.ttft_ms.map(ms),
            SloMetric::TpotMs => r.tpot_ms.map(ms),
            SloMetric::E2eMs => r.e2e_ms.map(ms),
            SloMetric::MsPerToken => r.ms_per_token.map(ms),
            SloMetric::ServerMsPerToken => r.server_ms_per_token.map(ms),
            SloMetric::QueueClientMs => r.queue_client_ms.map(ms),
            SloMetric::OutputTokens => r.output_tokens.map(f64::from),
        };
        value.is_some_and(|v| match self.op {
            SloOp::Le => v <= self.threshold,
            SloOp::Lt => v < self.threshold,
            SloOp::Ge => v >= self.threshold,
            SloOp::Gt => v > self.threshold,
        })
    }
}

impl FromStr for Slo {
    type Err = LoadgenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| LoadgenError::config("--slo", format!("`{s}`: {why}"));
        // Two-character operators first so `<=` is not read as `<`.
        let (pos, op, len) = [
            ("<=", SloOp::Le),
            (">=", SloOp::Ge),
            ("<", SloOp::Lt),
            (">", SloOp::Gt),
        ]
        .iter()
        .find_map(|(tok, op)| s.find(tok).map(|p| (p, *op, tok.len())))
        .ok_or_else(|| bad("expected METRIC<=VALUE"))?;
        let name = s[..pos].trim();
        let metric = METRICS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
                bad(&format!("unknown metric; one of {}", names.join(", ")))
            })?;
        let threshold: f64 = s[pos + len..]
            .trim()
            .parse()
            .map_err(|_| bad("the threshold is not a number"))?;
        Ok(Self {
            metric,
            op,
            threshold,
        })
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = METRICS
            .iter()
            .find(|(_, m)| *m == self.metric)
            .map_or("?", |(n, _)| n);
        let op = match self.op {
            SloOp::Le => "<=",
            SloOp::Lt => "<",
            SloOp::Ge => ">=",
            SloOp::Gt => ">",
        };
        write!(f, "{name}{op}{}", self.threshold)
    }
}

impl Serialize for Slo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Slo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parse_and_print_round_trip() {
        let s: Slo = "ttft_ms<=500".parse().unwrap();
        assert_eq!(
            (s.metric, s.op, s.threshold),
            (SloMetric::TtftMs, SloOp::Le, 500.0)
        );
        assert_eq!(s.to_string(), "ttft_ms<=500");
        assert_eq!("tpot_ms < 50".parse::<Slo>().unwrap().op, SloOp::Lt);
        assert!("latency<=5".parse::<Slo>().is_err());
        assert!("ttft_ms<=fast".parse::<Slo>().is_err());
    }

    #[test]
    fn undefined_or_failed_does_not_meet() {
        let mut r = RequestRecord::dropped(0, Duration::ZERO, 0, 1);
        let s: Slo = "ttft_ms<=500".parse().unwrap();
        assert!(!s.met_by(&r));
        r.outcome = Outcome::Success;
        assert!(!s.met_by(&r), "no ttft (not streamed)");
        r.ttft_ms = Some(Duration::from_millis(499));
        assert!(s.met_by(&r));
        r.ttft_ms = Some(Duration::from_millis(501));
        assert!(!s.met_by(&r));
    }
}
