//! `servebench report --import-2023` on the 2023 study's real CSV: every row
//! read, priced rows equal the cost formulas to the cent, and the picks are
//! the study's.

mod support;

use std::path::Path;

use support::{csv_2023, import_2023};

/// runs.csv as header -> cell maps.
fn read_runs_csv(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            // Imported rows hold no quoted commas except price_source, which
            // is quoted; split respecting quotes.
            let mut cells = Vec::new();
            let (mut cur, mut quoted) = (String::new(), false);
            for ch in l.chars() {
                match ch {
                    '"' => quoted = !quoted,
                    ',' if !quoted => cells.push(std::mem::take(&mut cur)),
                    c => cur.push(c),
                }
            }
            cells.push(cur);
            assert_eq!(cells.len(), header.len(), "{l}");
            header.iter().cloned().zip(cells).collect()
        })
        .collect()
}

#[test]
fn import_2023_reproduces_the_studys_figures() {
    let Some(csv) = csv_2023() else { return };
    let out = import_2023(&csv, "import");

    let rows = read_runs_csv(&out.join("runs.csv"));
    assert_eq!(rows.len(), 60);
    let priced: Vec<_> = rows
        .iter()
        .filter(|r| !r["cost_per_1m_tokens_usd"].is_empty())
        .collect();
    // Every row is priced: the study's own prices, and SageMaker's list
    // price for ml.g5.48xlarge, which the study did not print.
    assert_eq!(priced.len(), 60);
    for r in &priced {
        let f = |k: &str| r[k].parse::<f64>().unwrap();
        let minutes = 1e6 / f("output_throughput_tok_s") / 60.0;
        let usd = minutes / 60.0 * f("price_per_hour_usd");
        assert_eq!(
            format!("{:.2}", f("minutes_per_1m_tokens")),
            format!("{minutes:.2}")
        );
        assert_eq!(
            format!("{:.2}", f("cost_per_1m_tokens_usd")),
            format!("{usd:.2}")
        );
    }
    let example = priced
        .iter()
        .find(|r| {
            r["model"] == "Llama 2 7B"
                && r["instance"] == "ml.g5.12xlarge"
                && r["concurrency"] == "20"
        })
        .unwrap();
    let f = |k: &str| format!("{:.2}", example[k].parse::<f64>().unwrap());
    assert_eq!(
        [
            f("output_throughput_tok_s"),
            f("minutes_per_1m_tokens"),
            f("cost_per_1m_tokens_usd")
        ],
        ["449.94", "37.04", "4.38"]
    );

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let section = |title: &str| {
        let start = md.find(&format!("## {title}")).unwrap();
        let rest = &md[start + 3..];
        rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
    };
    let latency = section("Lowest latency");
    for (model, ms) in [
        ("Llama 2 7B", "16.81"),
        ("Llama 2 13B", "21.00"),
        ("Llama 2 70B", "41.35"),
    ] {
        let line = latency
            .lines()
            .find(|l| l.starts_with(&format!("| {model} |")))
            .unwrap_or_else(|| panic!("no lowest-latency row for {model}:\n{latency}"));
        assert_eq!(line.split(" | ").nth(5), Some(ms), "{line}");
    }
    for title in [
        "Most cost-effective",
        "Highest throughput",
        "Pareto front",
        "All runs",
    ] {
        assert!(
            section(title)
                .lines()
                .filter(|l| l.starts_with("| "))
                .count()
                > 2,
            "{title}"
        );
    }
    assert!(md.contains(
        "| Llama 2 7B | none | ml.g5.12xlarge | 20 | 44.00 | 449.94 | 7.09 | 37.04 | 4.38 |"
    ));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("class=\"pareto\" d=\"M"));
    let _ = std::fs::remove_dir_all(&out);
}
