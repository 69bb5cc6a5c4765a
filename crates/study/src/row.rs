//! One priced row: a deployment at one load level, as measured (or as read
//! from the 2023 study), with the cost formulas applied. Rows are what
//! `runs.jsonl` stores and what picks, the Pareto front and reports read.

use serde::{Deserialize, Serialize};
use servebench_loadgen::RunSummary;

use crate::cost::{cost_per_1m_tokens_usd, minutes_per_1m_tokens, TokensPerSecond};
use crate::prices::Price;
use crate::sagemaker::EndpointRecord;

/// Whether a run produced measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    /// The server did not start, died, or no request succeeded; `error` says why.
    Failed,
}

/// What a row's deployment is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The deployment's name, unique in a study.
    pub deployment: String,
    pub model: String,
    pub quantization: String,
    pub instance: String,
    /// Concurrent requests (virtual users) of the level.
    pub concurrency: u32,
}

/// One deployment x load level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    #[serde(flatten)]
    pub id: Identity,
    pub status: RunStatus,
    pub error: Option<String>,
    /// The median of [`Self::latency_metric`].
    pub latency_ms_per_token: Option<f64>,
    /// Which per-request latency the median is of: `server_ms_per_token`
    /// (the 2023 study's definition), `ms_per_token` (client side), or the
    /// 2023 CSV's own column.
    pub latency_metric: String,
    pub output_throughput_tok_s: Option<f64>,
    pub price_per_hour_usd: Option<f64>,
    pub price_source: Option<String>,
    pub minutes_per_1m_tokens: Option<f64>,
    pub cost_per_1m_tokens_usd: Option<f64>,
    /// When the run ended (milliseconds since the Unix epoch, a whole number so
    /// that it reads back exactly); 0 for imported rows.
    pub finished_at_unix_ms: u64,
    /// The bench's full summary of the level (every metric of METRICS.md).
    pub summary: Option<RunSummary>,
    /// Estimated by `servebench predict`, not measured (absent in files
    /// written before predictions existed: measured).
    #[serde(default)]
    pub predicted: bool,
    /// The SageMaker endpoint the run measured, when the study created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointRecord>,
}

impl RunRow {
    /// A measured row: latency and throughput, priced when a price is known.
    pub fn measured(
        id: Identity,
        latency: Option<(f64, &str)>,
        throughput: TokensPerSecond,
        price: Option<Price>,
    ) -> Self {
        let minutes = minutes_per_1m_tokens(throughput);
        let cost = match (minutes, &price) {
            (Some(m), Some(p)) => Some(cost_per_1m_tokens_usd(m, p.usd_per_hour)),
            _ => None,
        };
        Self {
            latency_ms_per_token: latency.map(|l| l.0),
            latency_metric: latency.map_or_else(String::new, |l| l.1.to_string()),
            output_throughput_tok_s: Some(throughput.0),
            minutes_per_1m_tokens: minutes,
            cost_per_1m_tokens_usd: cost,
            ..Self::empty(id, RunStatus::Ok, None, price)
        }
    }

    /// A run that produced nothing usable, with the reason.
    pub fn failed(id: Identity, error: impl Into<String>, price: Option<Price>) -> Self {
        Self::empty(id, RunStatus::Failed, Some(error.into()), price)
    }

    /// A row with its identity and price and no measurement.
    fn empty(id: Identity, status: RunStatus, error: Option<String>, price: Option<Price>) -> Self {
        Self {
            id,
            status,
            error,
            latency_ms_per_token: None,
            latency_metric: String::new(),
            output_throughput_tok_s: None,
            price_per_hour_usd: price.as_ref().map(|p| p.usd_per_hour.0),
            price_source: price.map(|p| p.source),
            minutes_per_1m_tokens: None,
            cost_per_1m_tokens_usd: None,
            finished_at_unix_ms: 0,
            summary: None,
            predicted: false,
            endpoint: None,
        }
    }

    /// Measured and usable by picks.
    pub fn is_ok(&self) -> bool {
        self.status == RunStatus::Ok
    }

    /// The key `--resume` matches saved runs on.
    pub fn key(&self) -> (String, u32) {
        (self.id.deployment.clone(), self.id.concurrency)
    }
}
