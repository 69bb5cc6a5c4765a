//! Reports from priced rows: `report.md`, `report.html` and `runs.csv`. The
//! tables' columns and cell formats are defined once here and shared by the
//! Markdown and HTML writers.

mod axis;
pub mod csv;
pub mod html;
pub mod markdown;

use std::path::Path;

use crate::error::{Result, StudyError};
use crate::pareto;
use crate::picks::{self, Pick, PickLevels};
use crate::row::RunRow;

/// The study's columns, exactly as the 2023 study printed them.
pub const COLUMNS: [&str; 9] = [
    "Model",
    "Quantization",
    "Instance",
    "Concurrent Requests",
    "Latency (ms/token) median",
    "Throughput (tokens/second)",
    "On-demand cost ($/h)",
    "Time to generate 1M tokens (minutes)",
    "Cost to generate 1M tokens ($)",
];

/// Everything a report shows, computed once.
pub struct Report<'a> {
    pub title: String,
    /// Lines printed under the title (what was measured, how, where).
    pub notes: Vec<String>,
    pub rows: &'a [RunRow],
    pub levels: PickLevels,
    /// What the latency column is the median of.
    pub latency_metric: String,
    pub picks: Vec<Pick>,
    /// Indices of rows on the latency vs cost-per-1M-tokens front.
    pub cost_front: Vec<usize>,
    /// Indices of rows on the latency vs throughput front.
    pub throughput_front: Vec<usize>,
    /// Predictions for measured rows (`--predict`), shown beside them.
    pub comparison: Vec<Comparison>,
}

/// A measured row and what the predictor says of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Index into the report's rows.
    pub row: usize,
    pub ms_per_token: Option<f64>,
    pub output_throughput_tok_s: Option<f64>,
    /// Why there is no prediction (unknown model or instance, does not fit).
    pub note: Option<String>,
}

/// The columns of the predicted-vs-measured table.
pub const COMPARISON_COLUMNS: [&str; 8] = [
    "Deployment",
    "Concurrent Requests",
    "Latency (ms/token) measured",
    "predicted",
    "error",
    "Throughput (tokens/second) measured",
    "predicted",
    "error",
];

/// `(predicted - measured) / measured` as a signed percentage.
fn error_pct(predicted: Option<f64>, measured: Option<f64>) -> String {
    match (predicted, measured) {
        (Some(p), Some(m)) if m != 0.0 => format!("{:+.1}%", (p / m - 1.0) * 100.0),
        _ => "-".into(),
    }
}

/// A comparison's cells in [`COMPARISON_COLUMNS`] order.
pub fn comparison_cells(rows: &[RunRow], c: &Comparison) -> [String; 8] {
    let r = &rows[c.row];
    let predicted = |v: Option<f64>| match (&c.note, v) {
        (_, Some(v)) => format!("{v:.2}"),
        (Some(n), None) => n.clone(),
        (None, None) => "-".into(),
    };
    [
        r.id.deployment.clone(),
        r.id.concurrency.to_string(),
        num(r.latency_ms_per_token, 2),
        predicted(c.ms_per_token),
        error_pct(c.ms_per_token, r.latency_ms_per_token),
        num(r.output_throughput_tok_s, 2),
        predicted(c.output_throughput_tok_s),
        error_pct(c.output_throughput_tok_s, r.output_throughput_tok_s),
    ]
}

/// A row's status as the run tables print it.
pub fn status(r: &RunRow) -> String {
    match (&r.error, r.predicted) {
        (Some(e), true) => e.clone(),
        (Some(e), false) => format!("failed: {e}"),
        (None, true) => "predicted".into(),
        (None, false) => "ok".into(),
    }
}

impl<'a> Report<'a> {
    /// Picks and fronts for `rows`.
    pub fn new(title: String, notes: Vec<String>, rows: &'a [RunRow], levels: PickLevels) -> Self {
        let latency_metric = rows
            .iter()
            .find(|r| r.is_ok() && !r.latency_metric.is_empty())
            .map_or_else(
                || "server_ms_per_token".to_string(),
                |r| r.latency_metric.clone(),
            );
        let ok = |r: &RunRow, v: Option<f64>| if r.is_ok() { v } else { None };
        let cost_points: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| {
                (
                    ok(r, r.latency_ms_per_token).unwrap_or(f64::NAN),
                    ok(r, r.cost_per_1m_tokens_usd).unwrap_or(f64::NAN),
                )
            })
            .collect();
        let tput_points: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| {
                (
                    ok(r, r.latency_ms_per_token).unwrap_or(f64::NAN),
                    -ok(r, r.output_throughput_tok_s).unwrap_or(f64::NAN),
                )
            })
            .collect();
        let mut picks = picks::picks(rows, levels);
        // A study of one model: its own picks are the overall ones; show them once.
        if picks::models(rows).len() <= 1 {
            picks.retain(|p| p.model.is_none());
        }
        Self {
            title,
            notes,
            rows,
            levels,
            latency_metric,
            picks,
            cost_front: pareto::front(&cost_points),
            throughput_front: pareto::front(&tput_points),
            comparison: Vec::new(),
        }
    }

    /// The rule of each pick kind, as printed.
    pub fn rule(&self, kind: picks::PickKind) -> String {
        kind.rule(self.levels, &self.latency_metric)
    }

    /// The overall pick of `kind`, with the cheapest row within 10% of it
    /// where that is another row.
    fn overall(&self, kind: picks::PickKind) -> Option<(&RunRow, Option<&RunRow>)> {
        let p = self
            .picks
            .iter()
            .find(|p| p.kind == kind && p.model.is_none())?;
        let row = &self.rows[p.row?];
        let near = p
            .cheapest_within_10pct
            .filter(|&i| Some(i) != p.row)
            .map(|i| &self.rows[i]);
        Some((row, near))
    }

    /// The study's answer in one paragraph of plain text: which deployment to
    /// buy for cost, for latency and for throughput, with the numbers.
    pub fn answer(&self) -> String {
        use picks::PickKind::*;
        let what = |r: &RunRow| {
            format!(
                "{} (quantization {}) on {}",
                r.id.model, r.id.quantization, r.id.instance
            )
        };
        let mut parts = Vec::new();
        if let Some((r, _)) = self.overall(MostCostEffective) {
            parts.push(format!(
                "For the lowest cost, buy {}: ${} per 1M tokens at {} concurrent requests.",
                what(r),
                usd(r.cost_per_1m_tokens_usd),
                r.id.concurrency
            ));
        }
        if let Some((r, _)) = self.overall(LowestLatency) {
            parts.push(format!(
                "For the lowest latency, {}: {} ms/token at {} concurrent {}.",
                what(r),
                num(r.latency_ms_per_token, 2),
                r.id.concurrency,
                if r.id.concurrency == 1 {
                    "request"
                } else {
                    "requests"
                }
            ));
        }
        if let Some((r, near)) = self.overall(HighestThroughput) {
            let mut s = format!(
                "For the highest throughput, {}: {} tokens/s at {} concurrent requests",
                what(r),
                num(r.output_throughput_tok_s, 2),
                r.id.concurrency
            );
            if let Some(n) = near {
                s.push_str(&format!(
                    " (within 10% of it and cheaper: {}, {} tokens/s, ${} per 1M tokens)",
                    what(n),
                    num(n.output_throughput_tok_s, 2),
                    usd(n.cost_per_1m_tokens_usd)
                ));
            }
            s.push('.');
            parts.push(s);
        }
        if parts.is_empty() {
            return "No run succeeded, so there is no deployment to recommend.".into();
        }
        parts.join(" ")
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// Dollars: cents where they matter, more digits for sub-dollar CPU prices.
fn usd(v: Option<f64>) -> String {
    match v {
        Some(v) if v.abs() < 1.0 && v != 0.0 => format!("{v:.4}"),
        other => num(other, 2),
    }
}

/// A row's cells in [`COLUMNS`] order.
pub fn cells(r: &RunRow) -> [String; 9] {
    let model = if r.predicted {
        format!("{} (predicted)", r.id.model)
    } else {
        r.id.model.clone()
    };
    [
        model,
        r.id.quantization.clone(),
        r.id.instance.clone(),
        r.id.concurrency.to_string(),
        num(r.latency_ms_per_token, 2),
        num(r.output_throughput_tok_s, 2),
        r.price_per_hour_usd
            .map_or_else(|| "unpriced".into(), |p| usd(Some(p))),
        num(r.minutes_per_1m_tokens, 2),
        usd(r.cost_per_1m_tokens_usd),
    ]
}

/// Writes `report.md`, `report.html` and `runs.csv` into `dir`.
pub fn write_all(dir: &Path, report: &Report) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(StudyError::io(dir))?;
    let files = [
        ("report.md", markdown::render(report)),
        ("report.html", html::render(report)),
        ("runs.csv", csv::render(report.rows)),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(StudyError::io(&path))?;
    }
    Ok(())
}

/// Renders every report file for `rows` into `dir`; the pick levels are
/// the study's 1/5/20 where the rows hold them.
pub fn write_for_rows(
    dir: &Path,
    title: String,
    notes: Vec<String>,
    rows: &[RunRow],
) -> Result<()> {
    write_compared(dir, title, notes, rows, Vec::new())
}

/// [`write_for_rows`] with predictions shown beside the measured rows.
pub fn write_compared(
    dir: &Path,
    title: String,
    notes: Vec<String>,
    rows: &[RunRow],
    comparison: Vec<Comparison>,
) -> Result<()> {
    let levels: Vec<u32> = rows.iter().map(|r| r.id.concurrency).collect();
    let mut report = Report::new(title, notes, rows, PickLevels::from_levels(&levels));
    report.comparison = comparison;
    write_all(dir, &report)
}
