//! The three picks of `METRICS.md` (as in the 2023 study), per model and
//! overall, each with the rule that made it, printed with every report.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::row::RunRow;

/// The load levels the rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickLevels {
    /// Lowest latency is read here (1 concurrent request).
    pub low: u32,
    /// Most cost-effective is read here (5 by default).
    pub medium: u32,
    /// Highest throughput is read here (20 by default).
    pub top: u32,
}

impl PickLevels {
    /// The study's 1/5/20 where the levels hold them; otherwise the lowest,
    /// the middle and the highest level given.
    pub fn from_levels(levels: &[u32]) -> Self {
        let mut l = levels.to_vec();
        l.sort_unstable();
        l.dedup();
        let pick = |want: u32, fallback: u32| if l.contains(&want) { want } else { fallback };
        let (first, last) = (
            l.first().copied().unwrap_or(1),
            l.last().copied().unwrap_or(1),
        );
        Self {
            low: pick(1, first),
            medium: pick(5, l.get(l.len() / 2).copied().unwrap_or(first)),
            top: pick(20, last),
        }
    }
}

/// Which question a pick answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PickKind {
    MostCostEffective,
    LowestLatency,
    HighestThroughput,
}

impl PickKind {
    pub const ALL: [PickKind; 3] = [
        PickKind::MostCostEffective,
        PickKind::LowestLatency,
        PickKind::HighestThroughput,
    ];

    pub fn title(self) -> &'static str {
        match self {
            PickKind::MostCostEffective => "Most cost-effective",
            PickKind::LowestLatency => "Lowest latency",
            PickKind::HighestThroughput => "Highest throughput",
        }
    }

    /// The rule, with the levels and the latency metric filled in.
    pub fn rule(self, levels: PickLevels, latency_metric: &str) -> String {
        match self {
            PickKind::MostCostEffective => format!(
                "lowest `cost_per_1m_tokens_usd` at {} concurrent requests; ties break on lower median latency",
                levels.medium
            ),
            PickKind::LowestLatency => format!(
                "lowest median {latency_metric} at {} concurrent request(s); ties break on lower cost",
                levels.low
            ),
            PickKind::HighestThroughput => format!(
                "highest `output_throughput_tok_s` at {} concurrent requests; ties break on lower cost; \
                 also named: the cheapest deployment within 10% of it",
                levels.top
            ),
        }
    }
}

/// One answer: the row chosen (index into the rows given), if any row qualified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pick {
    pub kind: PickKind,
    /// A model name, or `None` for the overall pick.
    pub model: Option<String>,
    pub row: Option<usize>,
    /// Highest throughput only: the cheapest row within 10% of the best.
    pub cheapest_within_10pct: Option<usize>,
}

/// Unpriced rows sort after every priced one.
fn cost(r: &RunRow) -> f64 {
    r.cost_per_1m_tokens_usd.unwrap_or(f64::INFINITY)
}

fn latency(r: &RunRow) -> f64 {
    r.latency_ms_per_token.unwrap_or(f64::INFINITY)
}

fn throughput(r: &RunRow) -> f64 {
    r.output_throughput_tok_s.unwrap_or(0.0)
}

/// The best of `candidates` by `order` (smaller is better), first on ties.
fn best(
    rows: &[RunRow],
    candidates: &[usize],
    order: impl Fn(&RunRow, &RunRow) -> Ordering,
) -> Option<usize> {
    candidates.iter().copied().reduce(|a, b| {
        if order(&rows[b], &rows[a]) == Ordering::Less {
            b
        } else {
            a
        }
    })
}

/// The three picks for the rows of one model (or all of them).
fn picks_of(
    rows: &[RunRow],
    subset: &[usize],
    levels: PickLevels,
    model: Option<&str>,
) -> Vec<Pick> {
    let at = |c: u32| -> Vec<usize> {
        subset
            .iter()
            .copied()
            .filter(|&i| rows[i].is_ok() && rows[i].id.concurrency == c)
            .collect()
    };
    let cheapest = |a: &RunRow, b: &RunRow| {
        cost(a)
            .total_cmp(&cost(b))
            .then(latency(a).total_cmp(&latency(b)))
    };
    let priced_medium: Vec<usize> = at(levels.medium)
        .into_iter()
        .filter(|&i| rows[i].cost_per_1m_tokens_usd.is_some())
        .collect();
    let with_latency: Vec<usize> = at(levels.low)
        .into_iter()
        .filter(|&i| rows[i].latency_ms_per_token.is_some())
        .collect();
    let top = at(levels.top);
    let fastest = best(rows, &top, |a, b| {
        throughput(b)
            .total_cmp(&throughput(a))
            .then(cost(a).total_cmp(&cost(b)))
    });
    let near: Vec<usize> = match fastest {
        Some(f) => top
            .iter()
            .copied()
            .filter(|&i| {
                rows[i].cost_per_1m_tokens_usd.is_some()
                    && throughput(&rows[i]) >= 0.9 * throughput(&rows[f])
            })
            .collect(),
        None => Vec::new(),
    };
    let model = model.map(str::to_string);
    vec![
        Pick {
            kind: PickKind::MostCostEffective,
            model: model.clone(),
            row: best(rows, &priced_medium, cheapest),
            cheapest_within_10pct: None,
        },
        Pick {
            kind: PickKind::LowestLatency,
            model: model.clone(),
            row: best(rows, &with_latency, |a, b| {
                latency(a)
                    .total_cmp(&latency(b))
                    .then(cost(a).total_cmp(&cost(b)))
            }),
            cheapest_within_10pct: None,
        },
        Pick {
            kind: PickKind::HighestThroughput,
            model,
            row: fastest,
            cheapest_within_10pct: best(rows, &near, cheapest),
        },
    ]
}

/// Models in order of first appearance.
pub fn models(rows: &[RunRow]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.id.model) {
            out.push(r.id.model.clone());
        }
    }
    out
}

/// Every pick: per model (in order of first appearance), then overall.
pub fn picks(rows: &[RunRow], levels: PickLevels) -> Vec<Pick> {
    let mut out = Vec::new();
    for m in models(rows) {
        let subset: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].id.model == m).collect();
        out.extend(picks_of(rows, &subset, levels, Some(&m)));
    }
    let all: Vec<usize> = (0..rows.len()).collect();
    out.extend(picks_of(rows, &all, levels, None));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{TokensPerSecond, UsdPerHour};
    use crate::prices::Price;
    use crate::row::Identity;

    fn row(model: &str, inst: &str, c: u32, lat: f64, tok_s: f64, usd_h: Option<f64>) -> RunRow {
        RunRow::measured(
            Identity {
                deployment: format!("{model}-{inst}"),
                model: model.into(),
                quantization: "q4_1".into(),
                instance: inst.into(),
                concurrency: c,
            },
            Some((lat, "server_ms_per_token")),
            TokensPerSecond(tok_s),
            usd_h.map(|p| Price {
                usd_per_hour: UsdPerHour(p),
                source: "test".into(),
            }),
        )
    }

    const L: PickLevels = PickLevels {
        low: 1,
        medium: 5,
        top: 20,
    };

    #[test]
    fn each_rule_reads_its_level() {
        let rows = vec![
            row("m", "a", 1, 10.0, 100.0, Some(1.0)),
            row("m", "b", 1, 8.0, 120.0, Some(4.0)),
            row("m", "a", 5, 12.0, 400.0, Some(1.0)),
            row("m", "b", 5, 9.0, 600.0, Some(4.0)),
            row("m", "a", 20, 30.0, 900.0, Some(1.0)),
            row("m", "b", 20, 20.0, 1000.0, Some(4.0)),
        ];
        let p = picks(&rows, L);
        assert_eq!(p.len(), 6, "one model + overall, three each");
        assert_eq!(p[0].row, Some(2), "cheaper per token at 5");
        assert_eq!(p[1].row, Some(1), "fastest per token at 1");
        assert_eq!(p[2].row, Some(5), "most tokens/s at 20");
        assert_eq!(
            p[2].cheapest_within_10pct,
            Some(4),
            "900 is within 10% of 1000 and cheaper"
        );
        assert_eq!(
            p[3..].iter().map(|p| p.row).collect::<Vec<_>>(),
            [Some(2), Some(1), Some(5)]
        );
        assert_eq!(p[3].model, None);
    }

    #[test]
    fn ties_break_on_lower_cost() {
        let rows = vec![
            row("m", "dear", 1, 10.0, 100.0, Some(9.0)),
            row("m", "cheap", 1, 10.0, 100.0, Some(1.0)),
            row("m", "unpriced", 20, 10.0, 500.0, None),
            row("m", "dear", 20, 10.0, 500.0, Some(9.0)),
            row("m", "cheap", 20, 10.0, 500.0, Some(1.0)),
        ];
        let p = picks(&rows, L);
        assert_eq!(p[1].row, Some(1));
        assert_eq!(p[2].row, Some(4));
        assert_eq!(p[0].row, None, "no row at the medium level");
    }

    #[test]
    fn failed_and_unpriced_rows_are_not_cost_picks() {
        let mut rows = vec![
            row("m", "a", 5, 1.0, 900.0, None),
            row("m", "b", 5, 1.0, 100.0, Some(1.0)),
            row("m", "c", 5, 1.0, 1000.0, Some(1.0)),
        ];
        rows[2].status = crate::row::RunStatus::Failed;
        assert_eq!(picks(&rows, L)[0].row, Some(1));
    }

    #[test]
    fn levels_fall_back_to_what_was_run() {
        assert_eq!(PickLevels::from_levels(&[1, 5, 10, 20]), L);
        assert_eq!(
            PickLevels::from_levels(&[2, 4, 8]),
            PickLevels {
                low: 2,
                medium: 4,
                top: 8
            }
        );
    }
}
