//! The final table printed after the run.

use crate::stats::Distribution;
use crate::summary::RunSummary;

fn p(d: &Option<Distribution>, f: fn(&Distribution) -> f64) -> String {
    d.as_ref().map_or("-".into(), |d| format!("{:.1}", f(d)))
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

/// One row per level, aligned columns, METRICS.md names in the header.
pub fn table(levels: &[RunSummary]) -> String {
    let header = [
        "level",
        "success",
        "failed",
        "dropped",
        "duration_s",
        "output_throughput_tok_s",
        "study_throughput_tok_s",
        "request_rate_s",
        "goodput_s",
        "ttft_ms p50",
        "ttft_ms p99",
        "tpot_ms p50",
        "itl_ms p50",
        "e2e_ms p50",
        "ms_per_token p50",
        "server_ms_per_token p50",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for l in levels {
        rows.push(vec![
            l.info.level.clone(),
            l.success.to_string(),
            l.failed.to_string(),
            l.dropped.to_string(),
            format!("{:.1}", l.duration_s.as_secs_f64()),
            format!("{:.1}", l.output_throughput_tok_s),
            opt(l.study_throughput_tok_s),
            format!("{:.2}", l.request_rate_s),
            opt(l.goodput_s),
            p(&l.ttft_ms, |d| d.p50),
            p(&l.ttft_ms, |d| d.p99),
            p(&l.tpot_ms, |d| d.p50),
            p(&l.itl_ms, |d| d.p50),
            p(&l.e2e_ms, |d| d.p50),
            p(&l.ms_per_token, |d| d.p50),
            p(&l.server_ms_per_token, |d| d.p50),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
