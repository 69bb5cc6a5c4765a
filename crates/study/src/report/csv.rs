//! `runs.csv`: one row per deployment x load level: the study's identity and
//! cost columns, then the bench's summary columns (every metric of
//! METRICS.md, distributions flattened as in `summary.csv`).

use servebench_loadgen::writers::{csv_cell, summary_cells, summary_columns};

use crate::row::{RunRow, RunStatus};

/// The study's own columns, before the bench's.
pub const STUDY_COLUMNS: [&str; 15] = [
    "deployment",
    "model",
    "quantization",
    "instance",
    "concurrency",
    "status",
    "predicted",
    "error",
    "latency_metric",
    "latency_ms_per_token_p50",
    "output_throughput_tok_s",
    "price_per_hour_usd",
    "minutes_per_1m_tokens",
    "cost_per_1m_tokens_usd",
    "price_source",
];

fn opt(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The file's text.
pub fn render(rows: &[RunRow]) -> String {
    let bench = summary_columns();
    let mut header: Vec<String> = STUDY_COLUMNS.iter().map(|s| s.to_string()).collect();
    // The bench's `level` and throughput columns repeat ours; prefix to keep names unique.
    header.extend(bench.iter().map(|c| format!("bench_{c}")));
    let mut out = header.join(",");
    out.push('\n');
    for r in rows {
        let mut c = vec![
            csv_cell(&r.id.deployment),
            csv_cell(&r.id.model),
            csv_cell(&r.id.quantization),
            csv_cell(&r.id.instance),
            r.id.concurrency.to_string(),
            match r.status {
                RunStatus::Ok => "ok".into(),
                RunStatus::Failed => "failed".into(),
            },
            r.predicted.to_string(),
            csv_cell(r.error.as_deref().unwrap_or("")),
            csv_cell(&r.latency_metric),
            opt(r.latency_ms_per_token),
            opt(r.output_throughput_tok_s),
            opt(r.price_per_hour_usd),
            opt(r.minutes_per_1m_tokens),
            opt(r.cost_per_1m_tokens_usd),
            csv_cell(r.price_source.as_deref().unwrap_or("")),
        ];
        match &r.summary {
            Some(s) => c.extend(summary_cells(s)),
            None => c.extend(std::iter::repeat_n(String::new(), bench.len())),
        }
        out.push_str(&c.join(","));
        out.push('\n');
    }
    out
}
