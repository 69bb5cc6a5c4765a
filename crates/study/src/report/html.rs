//! `report.html`: one self-contained file (inline CSS and SVG, no script, no
//! network at view time) with the same tables as `report.md` and the plots:
//! throughput, latency and cost per 1M tokens against concurrency per
//! deployment, and the latency/throughput scatter with its Pareto front.

use std::fmt::Write;

use super::axis::Axis;
use super::{cells, comparison_cells, status, Report, COLUMNS, COMPARISON_COLUMNS};
use crate::picks::PickKind;
use crate::row::RunRow;

/// The SVG's own coordinate system; it is drawn at the page's full width.
const W: f64 = 1000.0;
const H: f64 = 420.0;
/// Plot margins: left (axis labels), right (legend), top, bottom.
const ML: f64 = 72.0;
const MR: f64 = 290.0;
const MT: f64 = 20.0;
const MB: f64 = 48.0;
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

/// Escapes `s` and renders its Markdown code spans (`name`) as `<code>`,
/// so that text shared with `report.md` shows no backticks.
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(s).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Maps data to the plot area through two axes.
struct Frame {
    x: Axis,
    y: Axis,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        ML + self.x.frac(x) * (W - ML - MR)
    }
    fn py(&self, y: f64) -> f64 {
        H - MB - self.y.frac(y) * (H - MT - MB)
    }
    /// The opening `<svg>` tag, full width, with each axis' scale as data.
    fn svg(&self, class: &str) -> String {
        format!(
            r##"<svg class="{class}" data-xscale="{}" data-yscale="{}" xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {W} {H}" preserveAspectRatio="xMinYMin meet">"##,
            self.x.scale(),
            self.y.scale()
        )
    }
}

fn axes(out: &mut String, f: &Frame, xlabel: &str, ylabel: &str) {
    let (b, r) = (H - MB, W - MR);
    let _ = write!(
        out,
        r##"<line x1="{ML}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/><line x1="{ML}" y1="{MT}" x2="{ML}" y2="{b}" stroke="#333"/>"##
    );
    for &t in &f.x.ticks {
        let x = f.px(t);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{b}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text class="xtick" x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
            b + 4.0,
            b + 18.0,
            f.x.label(t)
        );
    }
    for &t in &f.y.ticks {
        let y = f.py(t);
        let _ = write!(
            out,
            r##"<line x1="{ML}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#e4e4e4"/><text class="ytick" x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"##,
            ML - 6.0,
            y + 4.0,
            f.y.label(t)
        );
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">{}</text><text transform="translate(16,{:.1}) rotate(-90)" font-size="13" text-anchor="middle">{}{}</text>"##,
        (ML + W - MR) / 2.0,
        H - 8.0,
        esc(xlabel),
        (MT + H - MB) / 2.0,
        esc(ylabel),
        if f.y.log { ", log scale" } else { "" }
    );
}

/// Series `i`'s colour, and a dash pattern once the palette has gone round,
/// so that no two of up to 30 deployments look alike.
fn style(i: usize) -> (&'static str, &'static str) {
    const DASHES: [&str; 3] = ["", "6 3", "2 2"];
    (
        PALETTE[i % PALETTE.len()],
        DASHES[(i / PALETTE.len()) % DASHES.len()],
    )
}

fn legend(out: &mut String, i: usize, name: &str) {
    let y = MT + 16.0 * i as f64;
    let (c, dash) = style(i);
    let _ = write!(
        out,
        r##"<line x1="{x}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="3" stroke-dasharray="{dash}"/><text x="{tx}" y="{:.1}" font-size="12">{}</text>"##,
        y + 5.0,
        W - MR + 30.0,
        y + 5.0,
        y + 9.0,
        esc(name),
        x = W - MR + 10.0,
        tx = W - MR + 36.0,
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

/// What a line chart plots: its title, the y axis' name and unit, the value.
struct Measure {
    title: &'static str,
    axis: &'static str,
    unit: &'static str,
    decimals: usize,
    value: fn(&RunRow) -> Option<f64>,
}

/// One line per deployment of a measure against concurrency; the x axis
/// ticks at the levels measured, each point says its exact value on hover.
fn line_chart(rows: &[RunRow], m: &Measure) -> String {
    let s = series(rows);
    let pts: Vec<(f64, f64)> = s
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter_map(|r| (m.value)(r).map(|y| (f64::from(r.id.concurrency), y)))
        .collect();
    let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
    let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let f = Frame {
        x: Axis::levels(&xs),
        y: Axis::values(&ys),
    };
    let mut out = format!(
        "<figure><figcaption>{}</figcaption>{}",
        esc(m.title),
        f.svg("plot vs-concurrency")
    );
    axes(
        &mut out,
        &f,
        "Concurrent Requests",
        &format!("{} ({})", m.axis, m.unit),
    );
    for (i, (name, v)) in s.iter().enumerate() {
        let p: Vec<(&RunRow, f64, f64)> = v
            .iter()
            .filter_map(|r| (m.value)(r).map(|y| (*r, f.px(f64::from(r.id.concurrency)), f.py(y))))
            .collect();
        if p.is_empty() {
            // Kept in the legend, so that colours match the other plots'.
            legend(&mut out, i, &format!("{name} (no value)"));
            continue;
        }
        let d: Vec<String> = p
            .iter()
            .enumerate()
            .map(|(k, (_, x, y))| format!("{}{x:.1} {y:.1}", if k == 0 { "M" } else { "L" }))
            .collect();
        let (c, dash) = style(i);
        let _ = write!(
            out,
            r##"<path class="series" d="{}" fill="none" stroke="{c}" stroke-width="2" stroke-dasharray="{dash}"/>"##,
            d.join(" ")
        );
        for (r, x, y) in &p {
            let _ = write!(
                out,
                r##"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="{c}"><title>{}, {} concurrent requests: {:.prec$} {}</title></circle>"##,
                esc(name),
                r.id.concurrency,
                (m.value)(r).unwrap_or(f64::NAN),
                esc(m.unit),
                prec = m.decimals
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
    let xs: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let ys: Vec<f64> = pts.iter().map(|p| p.2).collect();
    let f = Frame {
        x: Axis::values(&xs),
        y: Axis::values(&ys),
    };
    let mut out = format!(
        "<figure><figcaption>Latency vs throughput, every run; the line joins the Pareto front (no run is both faster per token and higher in throughput)</figcaption>{}",
        f.svg("plot scatter")
    );
    axes(
        &mut out,
        &f,
        &format!(
            "Latency (ms/token), median of {}{}",
            rep.latency_metric,
            if f.x.log { ", log scale" } else { "" }
        ),
        "Throughput (tokens/s)",
    );
    let names: Vec<String> = series(rows).into_iter().map(|(n, _)| n).collect();
    for &(i, x, y) in &pts {
        let k = names
            .iter()
            .position(|n| *n == rows[i].id.deployment)
            .unwrap_or(0);
        let _ = write!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"><title>{}, {} concurrent requests: {x:.2} ms/token, {y:.2} tokens/s</title></circle>"##,
            f.px(x),
            f.py(y),
            style(k).0,
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
         th{{background:#f3f3f3}}td:first-child{{text-align:left}}figure{{display:block;margin:0 0 1.5em}}p.answer{{font-size:1.1em;max-width:60em}}\
         figcaption{{font-weight:600;margin-bottom:4px}}\n</style></head><body>\n<h1>{}</h1>\n",
        esc(&rep.title),
        esc(&rep.title)
    );
    let _ = writeln!(out, "<p class=\"answer\">{}</p>", esc(&rep.answer()));
    for n in &rep.notes {
        let _ = writeln!(out, "<p>{}</p>", inline(n));
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
            inline(&rep.rule(kind))
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
    for m in [
        Measure {
            title: "Throughput against concurrency",
            axis: "Throughput",
            unit: "tokens/s",
            decimals: 2,
            value: |r| r.output_throughput_tok_s,
        },
        Measure {
            title: "Latency against concurrency",
            axis: "Latency, median",
            unit: "ms/token",
            decimals: 2,
            value: |r| r.latency_ms_per_token,
        },
        Measure {
            title: "Cost per 1M tokens against concurrency",
            axis: "Cost to generate 1M tokens",
            unit: "$",
            decimals: 4,
            value: |r| r.cost_per_1m_tokens_usd,
        },
    ] {
        out.push_str(&line_chart(rows, &m));
    }
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
