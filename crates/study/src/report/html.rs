//! `report.html`: one self-contained file (inline CSS and SVG, no script, no
//! network at view time) with the same tables as `report.md` and the plots:
//! throughput, latency and cost per 1M tokens against concurrency per
//! deployment, and the latency/throughput scatter with its Pareto front.

use std::fmt::Write;

use super::{cells, comparison_cells, status, Report, COLUMNS, COMPARISON_COLUMNS};
use crate::picks::PickKind;
use crate::row::RunRow;

const W: f64 = 640.0;
const H: f64 = 360.0;
/// Plot margins: left (axis labels), right (legend), top, bottom.
const ML: f64 = 64.0;
const MR: f64 = 190.0;
const MT: f64 = 20.0;
const MB: f64 = 44.0;
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Maps data ranges to the plot area.
struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn new(xs: impl Iterator<Item = f64> + Clone, ys: impl Iterator<Item = f64> + Clone) -> Self {
        let range = |v: &mut dyn Iterator<Item = f64>| {
            let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
            if !lo.is_finite() {
                (0.0, 1.0)
            } else if hi - lo < 1e-9 {
                (
                    lo - 1.0_f64.max(lo.abs() * 0.1),
                    hi + 1.0_f64.max(hi.abs() * 0.1),
                )
            } else {
                (lo, hi)
            }
        };
        let x = range(&mut xs.clone());
        // Values start at zero when they are all positive: bars of speed and cost read truer.
        let y = range(&mut ys.clone());
        let y = (if y.0 > 0.0 { 0.0 } else { y.0 }, y.1 * 1.05);
        Self { x, y }
    }
    fn px(&self, x: f64) -> f64 {
        ML + (x - self.x.0) / (self.x.1 - self.x.0) * (W - ML - MR)
    }
    fn py(&self, y: f64) -> f64 {
        H - MB - (y - self.y.0) / (self.y.1 - self.y.0) * (H - MT - MB)
    }
}

fn axes(out: &mut String, f: &Frame, xlabel: &str, ylabel: &str) {
    let _ = write!(
        out,
        r##"<line x1="{ML}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/><line x1="{ML}" y1="{MT}" x2="{ML}" y2="{b}" stroke="#333"/>"##,
        b = H - MB,
        r = W - MR
    );
    for i in 0..=4 {
        let t = f64::from(i) / 4.0;
        let (xv, yv) = (f.x.0 + t * (f.x.1 - f.x.0), f.y.0 + t * (f.y.1 - f.y.0));
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            f.px(xv),
            H - MB + 16.0,
            short(xv),
            ML - 6.0,
            f.py(yv) + 4.0,
            short(yv)
        );
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text><text transform="translate(14,{:.1}) rotate(-90)" font-size="12" text-anchor="middle">{}</text>"##,
        (ML + W - MR) / 2.0,
        H - 8.0,
        esc(xlabel),
        (MT + H - MB) / 2.0,
        esc(ylabel)
    );
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn legend(out: &mut String, i: usize, name: &str) {
    let y = MT + 14.0 * i as f64;
    let _ = write!(
        out,
        r##"<rect x="{x}" y="{:.1}" width="10" height="10" fill="{c}"/><text x="{tx}" y="{:.1}" font-size="11">{}</text>"##,
        y,
        y + 9.0,
        esc(name),
        x = W - MR + 10.0,
        tx = W - MR + 24.0,
        c = PALETTE[i % PALETTE.len()]
    );
}

/// Deployments in order of first appearance, with their ok rows.
fn series(rows: &[RunRow]) -> Vec<(String, Vec<&RunRow>)> {
    let mut out: Vec<(String, Vec<&RunRow>)> = Vec::new();
    for r in rows.iter().filter(|r| r.is_ok()) {
        match out.iter_mut().find(|(d, _)| *d == r.id.deployment) {
            Some((_, v)) => v.push(r),
            None => out.push((r.id.deployment.clone(), vec![r])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by_key(|r| r.id.concurrency);
    }
    out
}

/// One line per deployment of `value` against concurrency.
fn line_chart(
    rows: &[RunRow],
    title: &str,
    ylabel: &str,
    value: fn(&RunRow) -> Option<f64>,
) -> String {
    let s = series(rows);
    let pts = || {
        s.iter().flat_map(|(_, v)| {
            v.iter()
                .filter_map(|r| value(r).map(|y| (f64::from(r.id.concurrency), y)))
        })
    };
    let f = Frame::new(pts().map(|p| p.0), pts().map(|p| p.1));
    let mut out = format!(
        r##"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">"##,
        esc(title)
    );
    axes(&mut out, &f, "Concurrent Requests", ylabel);
    for (i, (name, v)) in s.iter().enumerate() {
        let p: Vec<(f64, f64)> = v
            .iter()
            .filter_map(|r| value(r).map(|y| (f.px(f64::from(r.id.concurrency)), f.py(y))))
            .collect();
        if p.is_empty() {
            continue;
        }
        let d: Vec<String> = p
            .iter()
            .enumerate()
            .map(|(k, (x, y))| format!("{}{x:.1} {y:.1}", if k == 0 { "M" } else { "L" }))
            .collect();
        let c = PALETTE[i % PALETTE.len()];
        let _ = write!(
            out,
            r##"<path class="series" d="{}" fill="none" stroke="{c}" stroke-width="2"/>"##,
            d.join(" ")
        );
        for (x, y) in &p {
            let _ = write!(
                out,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{c}"/>"##
            );
        }
        legend(&mut out, i, name);
    }
    out.push_str("</svg></figure>\n");
    out
}

/// Every run as a point (latency, throughput), the Pareto front as a line.
fn scatter(rep: &Report) -> String {
    let rows = rep.rows;
    let pts: Vec<(usize, f64, f64)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .filter_map(|(i, r)| Some((i, r.latency_ms_per_token?, r.output_throughput_tok_s?)))
        .collect();
    let f = Frame::new(pts.iter().map(|p| p.1), pts.iter().map(|p| p.2));
    let mut out = format!(
        r##"<figure><figcaption>Latency vs throughput, every run; the line joins the Pareto front (no run is both faster per token and higher in throughput)</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">"##
    );
    axes(
        &mut out,
        &f,
        &format!("Latency (ms/token) median, {}", rep.latency_metric),
        "Throughput (tokens/second)",
    );
    let names: Vec<String> = series(rows).into_iter().map(|(n, _)| n).collect();
    for &(i, x, y) in &pts {
        let k = names
            .iter()
            .position(|n| *n == rows[i].id.deployment)
            .unwrap_or(0);
        let _ = write!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"><title>{} c={}</title></circle>"##,
            f.px(x),
            f.py(y),
            PALETTE[k % PALETTE.len()],
            esc(&rows[i].id.deployment),
            rows[i].id.concurrency
        );
    }
    let front: Vec<String> = rep
        .throughput_front
        .iter()
        .filter_map(|&i| {
            Some((
                rows[i].latency_ms_per_token?,
                rows[i].output_throughput_tok_s?,
            ))
        })
        .enumerate()
        .map(|(k, (x, y))| {
            format!(
                "{}{:.1} {:.1}",
                if k == 0 { "M" } else { "L" },
                f.px(x),
                f.py(y)
            )
        })
        .collect();
    if !front.is_empty() {
        let _ = write!(
            out,
            r##"<path class="pareto" d="{}" fill="none" stroke="#000" stroke-dasharray="4 3"/>"##,
            front.join(" ")
        );
    }
    for (k, n) in names.iter().enumerate() {
        legend(&mut out, k, n);
    }
    out.push_str("</svg></figure>\n");
    out
}

fn table(out: &mut String, first: &[&str], rows: Vec<(Vec<String>, Option<&RunRow>)>) {
    out.push_str("<table><thead><tr>");
    for c in first.iter().chain(COLUMNS.iter()) {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr></thead><tbody>");
    for (lead, r) in rows {
        out.push_str("<tr>");
        let rest: Vec<String> = match r {
            Some(r) => cells(r).to_vec(),
            None => vec!["-".into(); COLUMNS.len()],
        };
        for c in lead.iter().chain(rest.iter()) {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
}

/// The file's text.
pub fn render(rep: &Report) -> String {
    let rows = rep.rows;
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse;margin:0.5em 0 1.5em}}th,td{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child{{text-align:left}}figure{{display:inline-block;margin:0 1em 1em 0}}\
         figcaption{{font-weight:600;margin-bottom:4px}}\n</style></head><body>\n<h1>{}</h1>\n",
        esc(&rep.title),
        esc(&rep.title)
    );
    for n in &rep.notes {
        let _ = writeln!(out, "<p>{}</p>", esc(n));
    }
    let _ = writeln!(
        out,
        "<p>Latency (ms/token) median: the median of <code>{}</code>.</p>",
        esc(&rep.latency_metric)
    );
    for kind in PickKind::ALL {
        let _ = writeln!(
            out,
            "<h2>{}</h2><p>Rule: {}.</p>",
            kind.title(),
            esc(&rep.rule(kind))
        );
        let mut t = Vec::new();
        for p in rep.picks.iter().filter(|p| p.kind == kind) {
            let scope = p.model.clone().unwrap_or_else(|| "overall".into());
            t.push((vec![scope], p.row.map(|i| &rows[i])));
            if let Some(i) = p.cheapest_within_10pct.filter(|&i| Some(i) != p.row) {
                t.push((vec!["cheapest within 10%".into()], Some(&rows[i])));
            }
        }
        table(&mut out, &["Scope"], t);
    }
    out.push_str("<h2>Plots</h2>\n");
    out.push_str(&line_chart(
        rows,
        "Throughput against concurrency",
        "Throughput (tokens/second)",
        |r| r.output_throughput_tok_s,
    ));
    out.push_str(&line_chart(
        rows,
        "Latency against concurrency",
        "Latency (ms/token) median",
        |r| r.latency_ms_per_token,
    ));
    out.push_str(&line_chart(
        rows,
        "Cost per 1M tokens against concurrency",
        "Cost to generate 1M tokens ($)",
        |r| r.cost_per_1m_tokens_usd,
    ));
    out.push_str(&scatter(rep));
    out.push_str("<h2>Pareto front: latency vs cost per 1M tokens</h2>\n");
    table(
        &mut out,
        &[],
        rep.cost_front
            .iter()
            .map(|&i| (vec![], Some(&rows[i])))
            .collect(),
    );
    if !rep.comparison.is_empty() {
        out.push_str("<h2>Predicted vs measured</h2>\n<p>error = predicted / measured - 1.</p>\n<table><thead><tr>");
        for c in COMPARISON_COLUMNS {
            let _ = write!(out, "<th>{}</th>", esc(c));
        }
        out.push_str("</tr></thead><tbody>");
        for c in &rep.comparison {
            out.push_str("<tr>");
            for cell in comparison_cells(rows, c) {
                let _ = write!(out, "<td>{}</td>", esc(&cell));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("<h2>All runs</h2>\n");
    table(
        &mut out,
        &["Deployment", "Status"],
        rows.iter()
            .map(|r| (vec![r.id.deployment.clone(), status(r)], Some(r)))
            .collect(),
    );
    out.push_str("</body></html>\n");
    out
}
