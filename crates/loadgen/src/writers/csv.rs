//! `summary.csv`: one row per level; distributions flattened to
//! `<metric>_<stat>` columns. Empty cells are undefined values.

use crate::stats::Distribution;
use crate::summary::RunSummary;

const STATS: [&str; 7] = ["mean", "min", "max", "p50", "p90", "p95", "p99"];

/// The distributions of a summary, in column order.
const DISTRIBUTIONS: [&str; 9] = [
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "e2e_ms",
    "ms_per_token",
    "server_ms_per_token",
    "queue_client_ms",
    "output_tokens",
    "input_tokens",
];

fn dists(s: &RunSummary) -> [&Option<Distribution>; 9] {
    [
        &s.ttft_ms,
        &s.tpot_ms,
        &s.itl_ms,
        &s.e2e_ms,
        &s.ms_per_token,
        &s.server_ms_per_token,
        &s.queue_client_ms,
        &s.output_tokens,
        &s.input_tokens,
    ]
}

fn stat(d: &Distribution, name: &str) -> f64 {
    match name {
        "mean" => d.mean,
        "min" => d.min,
        "max" => d.max,
        "p50" => d.p50,
        "p90" => d.p90,
        "p95" => d.p95,
        "p99" => d.p99,
        _ => f64::NAN,
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Quotes a cell when it holds a separator, a quote or a line break.
pub fn cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The file's text.
pub fn summary_csv(levels: &[RunSummary]) -> String {
    let mut out = summary_columns().join(",");
    out.push('\n');
    for l in levels {
        out.push_str(&summary_cells(l).join(","));
        out.push('\n');
    }
    out
}

/// The header of one summary row, so that other tables (the study's
/// `runs.csv`) can append the same columns.
pub fn summary_columns() -> Vec<String> {
    let mut header: Vec<String> = [
        "level",
        "load",
        "concurrency",
        "rate_s",
        "arrival",
        "api",
        "stream",
        "interrupted",
        "duration_s",
        "success",
        "failed",
        "dropped",
        "error_rate",
        "output_tokens_total",
        "output_tokens_source",
        "output_throughput_tok_s",
        "study_throughput_tok_s",
        "request_rate_s",
        "goodput_s",
        "slo",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for name in DISTRIBUTIONS {
        for s in STATS {
            header.push(format!("{name}_{s}"));
        }
    }
    header
}

/// One summary's cells, in [`summary_columns`] order, already quoted.
pub fn summary_cells(l: &RunSummary) -> Vec<String> {
    {
        let (kind, concurrency, rate, arrival) = match l.info.load {
            crate::LoadModel::Closed { concurrency } => ("closed", Some(concurrency), None, None),
            crate::LoadModel::Open {
                rate_s, arrival, ..
            } => ("open", None, Some(rate_s), Some(arrival.as_str())),
        };
        let slo: Vec<String> = l.info.slo.iter().map(|s| s.to_string()).collect();
        let mut row = vec![
            cell(&l.info.level),
            kind.to_string(),
            opt(concurrency),
            opt(rate),
            opt(arrival),
            l.info.api.as_str().to_string(),
            l.info.stream.to_string(),
            l.info.interrupted.to_string(),
            l.duration_s.as_secs_f64().to_string(),
            l.success.to_string(),
            l.failed.to_string(),
            l.dropped.to_string(),
            l.error_rate.to_string(),
            l.output_tokens_total.to_string(),
            opt(l.output_tokens_source.map(|s| {
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })),
            l.output_throughput_tok_s.to_string(),
            opt(l.study_throughput_tok_s),
            l.request_rate_s.to_string(),
            opt(l.goodput_s),
            cell(&slo.join(" ")),
        ];
        for d in dists(l) {
            for s in STATS {
                row.push(opt(d.as_ref().map(|d| stat(d, s))));
            }
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::LevelInfo;

    #[test]
    fn rows_line_up_with_the_header() {
        let info = LevelInfo {
            level: "r=2/s poisson".into(),
            load: crate::LoadModel::Open {
                rate_s: 2.0,
                arrival: crate::Arrival::Poisson,
                max_in_flight: 8,
            },
            api: crate::Api::OpenaiChat,
            url: "http://x".into(),
            model_name: None,
            stream: true,
            interrupted: false,
            slo: vec!["ttft_ms<=500".parse().unwrap()],
        };
        let s = RunSummary::from_records(info, &[]);
        let text = summary_csv(&[s]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].split(',').count(), lines[1].split(',').count());
        assert!(lines[1].starts_with("r=2/s poisson,open,,2,poisson,openai-chat,"));
        assert_eq!(cell("a,b\"c"), "\"a,b\"\"c\"");
    }
}
