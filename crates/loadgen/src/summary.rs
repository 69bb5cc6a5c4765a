//! Per-run metrics of `METRICS.md` from one level's request records.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::Api;
use crate::error::ErrorKind;
use crate::load::LoadModel;
use crate::record::{Outcome, RequestRecord, TokenCountSource};
use crate::slo::Slo;
use crate::stats::Distribution;
use crate::units::{as_secs, ms};

/// What was run (copied into every summary so one entry stands alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelInfo {
    /// Short name of the load level (`c=5`, `r=2/s poisson`).
    pub level: String,
    pub load: LoadModel,
    pub api: Api,
    /// The URL requests went to.
    pub url: String,
    pub model_name: Option<String>,
    pub stream: bool,
    /// Cut short by Ctrl-C.
    pub interrupted: bool,
    /// The objectives `goodput_s` counts against.
    pub slo: Vec<Slo>,
}

/// One level's results: one entry of `summary.json`'s `levels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub info: LevelInfo,
    /// First `scheduled_at` to last completion.
    #[serde(with = "as_secs")]
    pub duration_s: Duration,
    pub success: u64,
    pub failed: u64,
    pub dropped: u64,
    /// `(failed + dropped) / all`.
    pub error_rate: f64,
    /// Failed requests by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Sum of `output_tokens` of successful requests.
    pub output_tokens_total: u64,
    /// `server` when every successful request had the server's count;
    /// `events` or `mixed` flag counted token events.
    pub output_tokens_source: Option<TokenCountSource>,
    pub output_throughput_tok_s: f64,
    /// `concurrency x mean(output_tokens) x 1000 / mean(e2e_ms)`; closed loop only.
    pub study_throughput_tok_s: Option<f64>,
    pub request_rate_s: f64,
    /// Successful requests per second meeting every objective; null without `--slo`.
    pub goodput_s: Option<f64>,
    pub ttft_ms: Option<Distribution>,
    pub tpot_ms: Option<Distribution>,
    pub itl_ms: Option<Distribution>,
    pub e2e_ms: Option<Distribution>,
    pub ms_per_token: Option<Distribution>,
    pub server_ms_per_token: Option<Distribution>,
    pub queue_client_ms: Option<Distribution>,
    pub output_tokens: Option<Distribution>,
    pub input_tokens: Option<Distribution>,
}

impl RunSummary {
    /// Summarizes one level. Latency statistics use successful requests only.
    pub fn from_records(info: LevelInfo, records: &[RequestRecord]) -> Self {
        let ok: Vec<&RequestRecord> = records
            .iter()
            .filter(|r| r.outcome == Outcome::Success)
            .collect();
        let count = |o: Outcome| records.iter().filter(|r| r.outcome == o).count() as u64;
        let (success, failed, dropped) = (
            ok.len() as u64,
            count(Outcome::Failed),
            count(Outcome::Dropped),
        );
        let mut errors = BTreeMap::new();
        for kind in records.iter().filter_map(|r| r.error_kind) {
            *errors.entry(kind).or_insert(0) += 1;
        }
        let start = records.iter().map(|r| r.scheduled_at).min();
        let end = records.iter().filter_map(RequestRecord::completed_at).max();
        let duration = match (start, end) {
            (Some(s), Some(e)) => e.saturating_sub(s),
            _ => Duration::ZERO,
        };
        let per_s = |n: f64| {
            if duration.is_zero() {
                0.0
            } else {
                n / duration.as_secs_f64()
            }
        };
        let output_tokens_total: u64 = ok
            .iter()
            .filter_map(|r| r.output_tokens)
            .map(u64::from)
            .sum();
        let sources: Vec<TokenCountSource> =
            ok.iter().filter_map(|r| r.output_tokens_source).collect();
        let output_tokens_source = match sources.first() {
            None => None,
            Some(&first) if sources.iter().all(|&s| s == first) => Some(first),
            Some(_) => Some(TokenCountSource::Mixed),
        };
        let dist_ms = |f: fn(&RequestRecord) -> Option<Duration>| {
            Distribution::of(ok.iter().filter_map(|r| f(r)).map(ms).collect())
        };
        let dist_tok = |f: fn(&RequestRecord) -> Option<u32>| {
            Distribution::of(ok.iter().filter_map(|r| f(r)).map(f64::from).collect())
        };
        let e2e_ms = dist_ms(|r| r.e2e_ms);
        let output_tokens = dist_tok(|r| r.output_tokens);
        let study_throughput_tok_s = match (info.load.concurrency(), &output_tokens, &e2e_ms) {
            (Some(c), Some(tok), Some(e2e)) if e2e.mean > 0.0 => {
                Some(f64::from(c) * tok.mean * 1000.0 / e2e.mean)
            }
            _ => None,
        };
        let goodput_s = (!info.slo.is_empty()).then(|| {
            let good = ok
                .iter()
                .filter(|r| info.slo.iter().all(|s| s.met_by(r)))
                .count();
            per_s(good as f64)
        });
        let all = records.len() as f64;
        Self {
            duration_s: duration,
            success,
            failed,
            dropped,
            error_rate: if all > 0.0 {
                (failed + dropped) as f64 / all
            } else {
                0.0
            },
            errors,
            output_tokens_total,
            output_tokens_source,
            output_throughput_tok_s: per_s(output_tokens_total as f64),
            study_throughput_tok_s,
            request_rate_s: per_s(success as f64),
            goodput_s,
            ttft_ms: dist_ms(|r| r.ttft_ms),
            tpot_ms: dist_ms(|r| r.tpot_ms),
            itl_ms: Distribution::of(
                ok.iter()
                    .flat_map(|r| r.itl_ms.iter().copied().map(ms))
                    .collect(),
            ),
            e2e_ms,
            ms_per_token: dist_ms(|r| r.ms_per_token),
            server_ms_per_token: dist_ms(|r| r.server_ms_per_token),
            queue_client_ms: dist_ms(|r| r.queue_client_ms),
            output_tokens,
            input_tokens: dist_tok(|r| r.input_tokens),
            info,
        }
    }

    /// Whether any request failed or was dropped (the exit code's question).
    pub fn had_errors(&self) -> bool {
        self.failed + self.dropped > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Trace;
    use std::time::Instant;

    fn info(concurrency: u32, slo: &[&str]) -> LevelInfo {
        LevelInfo {
            level: "c=2".into(),
            load: LoadModel::Closed { concurrency },
            api: Api::Tgi,
            url: "http://x/generate_stream".into(),
            model_name: None,
            stream: true,
            interrupted: false,
            slo: slo.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    /// A successful request scheduled at `at` ms, first token after `ttft`,
    /// ending after `e2e`, with `n` tokens.
    fn ok(epoch: Instant, index: u64, at: u64, ttft: u64, e2e: u64, n: u32) -> RequestRecord {
        let s = epoch + Duration::from_millis(at);
        let mut t = Trace::new(epoch, s, s);
        t.on_tokens(s + Duration::from_millis(ttft), 1, 1);
        t.end = Some(s + Duration::from_millis(e2e));
        t.reported_tokens = Some(n);
        t.finish(index, 0, None, n, None)
    }

    #[test]
    fn throughputs_rates_and_goodput() {
        let epoch = Instant::now();
        let mut records = vec![
            ok(epoch, 0, 0, 100, 1000, 50),
            ok(epoch, 1, 0, 300, 2000, 50),
            ok(epoch, 2, 1000, 100, 1000, 50),
        ];
        let mut failed = Trace::new(epoch, epoch, epoch);
        failed.end = Some(epoch + Duration::from_millis(10));
        records.push(failed.finish(3, 0, None, 50, Some((ErrorKind::Http429, "busy".into()))));
        records.push(RequestRecord::dropped(4, Duration::from_millis(5), 0, 50));
        let s = RunSummary::from_records(info(2, &["ttft_ms<=200"]), &records);
        assert_eq!((s.success, s.failed, s.dropped), (3, 1, 1));
        assert_eq!(s.duration_s, Duration::from_secs(2));
        assert_eq!(s.output_tokens_total, 150);
        assert_eq!(s.output_throughput_tok_s, 75.0);
        assert_eq!(s.request_rate_s, 1.5);
        assert_eq!(s.goodput_s, Some(1.0));
        assert_eq!(s.error_rate, 0.4);
        assert_eq!(s.errors.get(&ErrorKind::Http429), Some(&1));
        // 2 x 50 x 1000 / mean(1000, 2000, 1000)
        assert_eq!(
            s.study_throughput_tok_s,
            Some(2.0 * 50.0 * 1000.0 / (4000.0 / 3.0))
        );
        assert_eq!(s.ttft_ms.unwrap().p50, 100.0);
        assert_eq!(s.output_tokens_source, Some(TokenCountSource::Server));
        assert!(s.had_errors());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["errors"]["http_429"], 1);
        assert_eq!(json["load"]["kind"], "closed");
        assert_eq!(json["slo"][0], "ttft_ms<=200");
        assert_eq!(json["duration_s"], 2.0);
        let back: RunSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn empty_level_has_zero_rates() {
        let s = RunSummary::from_records(info(1, &[]), &[]);
        assert_eq!(
            (s.output_throughput_tok_s, s.goodput_s, s.ttft_ms),
            (0.0, None, None)
        );
        assert!(!s.had_errors());
    }
}
