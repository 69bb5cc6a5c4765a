//! `report.md`: the three picks' tables (per model and overall) with their
//! rules, the Pareto front, then every row.

use std::fmt::Write;

use super::{cells, comparison_cells, status, Report, COLUMNS, COMPARISON_COLUMNS};
use crate::picks::PickKind;
use crate::row::RunRow;

fn header(out: &mut String, first: &[&str]) {
    let cols: Vec<&str> = first.iter().chain(COLUMNS.iter()).copied().collect();
    let _ = writeln!(out, "| {} |", cols.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(cols.len()));
}

fn line(out: &mut String, first: &[String], r: &RunRow) {
    let mut c: Vec<String> = first.to_vec();
    c.extend(cells(r));
    let _ = writeln!(out, "| {} |", c.join(" | "));
}

/// The file's text.
pub fn render(rep: &Report) -> String {
    let rows = rep.rows;
    let mut out = format!("# {}\n\n{}\n\n", rep.title, rep.answer());
    for n in &rep.notes {
        let _ = writeln!(out, "{n}  ");
    }
    let _ = writeln!(
        out,
        "\nLatency (ms/token) median: the median of {} over the level's successful requests. \
         Throughput: `output_throughput_tok_s`. Time and cost per 1M tokens: \
         `minutes_per_1m_tokens = 1e6 / throughput / 60`, \
         `cost_per_1m_tokens_usd = minutes / 60 x price_per_hour_usd` (METRICS.md).\n",
        rep.latency_metric
    );
    let (ok, failed) = (
        rows.iter().filter(|r| r.is_ok()).count(),
        rows.iter().filter(|r| !r.is_ok()).count(),
    );
    let priced = rows
        .iter()
        .filter(|r| r.cost_per_1m_tokens_usd.is_some())
        .count();
    let _ = writeln!(
        out,
        "Runs: {} ({ok} measured, {failed} failed); {priced} priced.\n",
        rows.len()
    );
    for kind in PickKind::ALL {
        let _ = writeln!(out, "## {}\n\nRule: {}.\n", kind.title(), rep.rule(kind));
        header(&mut out, &["Scope"]);
        for p in rep.picks.iter().filter(|p| p.kind == kind) {
            let scope = p.model.clone().unwrap_or_else(|| "**overall**".into());
            match p.row {
                Some(i) => line(&mut out, &[scope], &rows[i]),
                None => {
                    let _ = writeln!(out, "| {scope} |{}", " - |".repeat(COLUMNS.len()));
                }
            }
            if let Some(i) = p.cheapest_within_10pct.filter(|&i| Some(i) != p.row) {
                line(&mut out, &["cheapest within 10%".to_string()], &rows[i]);
            }
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "## Pareto front: latency vs cost per 1M tokens\n\n\
         No other run is both faster per token and cheaper per 1M tokens.\n"
    );
    header(&mut out, &[]);
    for &i in &rep.cost_front {
        line(&mut out, &[], &rows[i]);
    }
    if !rep.comparison.is_empty() {
        let _ = writeln!(
            out,
            "\n## Predicted vs measured\n\n\
             `servebench predict`'s figures for each measured run; error = predicted / measured - 1.\n"
        );
        let _ = writeln!(out, "| {} |", COMPARISON_COLUMNS.join(" | "));
        let _ = writeln!(out, "|{}", " --- |".repeat(COMPARISON_COLUMNS.len()));
        for c in &rep.comparison {
            let cells = comparison_cells(rows, c).map(|s| s.replace('|', "/"));
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    let _ = writeln!(out, "\n## All runs\n");
    header(&mut out, &["Deployment", "Status"]);
    for r in rows {
        let status = status(r).replace('|', "/").replace('\n', " ");
        line(&mut out, &[r.id.deployment.clone(), status], r);
    }
    let sources: Vec<&str> = {
        let mut s: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.price_source.as_deref())
            .collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    if !sources.is_empty() {
        let _ = writeln!(out, "\nPrices:");
        for s in sources {
            let _ = writeln!(out, "- {s}");
        }
    }
    out
}
