//! The study's side of `servebench predict` (crates/predict): measured rows
//! (`runs.jsonl`, the 2023 CSV) become the predictor's observations, and its
//! predictions become rows, so that the study's picks and report writers
//! serve measured and predicted runs alike.

use std::path::{Path, PathBuf};

use servebench_predict::fit::Observation;
use servebench_predict::hardware::Catalog as Hardware;
use servebench_predict::perf::{self, Candidate, Factors, Prediction, Workload};
use servebench_predict::quant::Quant;
use servebench_predict::shape::Shape;

use crate::cost::TokensPerSecond;
use crate::error::Result;
use crate::prices::Catalog;
use crate::report::Comparison;
use crate::row::{Identity, RunRow, RunStatus};
use crate::{import_2023, store};

/// Measured rows from each file: a `.csv` is the 2023 study's CSV; a folder
/// or a `.jsonl` file is a study's `runs.jsonl`.
pub fn load_calibration(paths: &[PathBuf], prices: &Catalog) -> Result<Vec<RunRow>> {
    let mut rows = Vec::new();
    for p in paths {
        let loaded = if p.extension().is_some_and(|e| e == "csv") {
            import_2023::load(p, prices)?
        } else if p.is_dir() {
            store::read(p)?
        } else {
            store::read_file(p)?
        };
        rows.extend(loaded);
    }
    Ok(rows)
}

/// The report's name of a model: `llama-2-13b` -> `Llama 2 13B` (as the
/// 2023 study's rows are named, so picks group them together); other names
/// as given.
pub fn model_label(model: &str) -> String {
    match model.strip_prefix("llama-2-") {
        Some(size) => format!("Llama 2 {}", size.to_uppercase()),
        None => model.to_string(),
    }
}

/// A candidate from names; `tp` defaults to every accelerator of the instance.
pub fn candidate(
    model: &str,
    quantize: &str,
    instance: &str,
    tp: Option<u32>,
    concurrency: u32,
    workload: Workload,
    hardware: &Hardware,
) -> servebench_predict::Result<Candidate> {
    let hw = hardware.hardware(instance)?;
    let tp = tp.unwrap_or(hw.devices);
    if tp == 0 || tp > hw.devices {
        return Err(servebench_predict::PredictError::Tp {
            instance: instance.to_string(),
            tp,
            devices: hw.devices,
        });
    }
    Ok(Candidate {
        shape: Shape::resolve(model)?,
        quant: Quant::parse(quantize)?,
        hardware: hw,
        tp,
        concurrency,
        workload,
    })
}

/// The candidate a measured row ran (every accelerator, as the 2023 study).
fn row_candidate(
    r: &RunRow,
    workload: Workload,
    hardware: &Hardware,
) -> servebench_predict::Result<Candidate> {
    candidate(
        &r.id.model,
        &r.id.quantization,
        &r.id.instance,
        None,
        r.id.concurrency,
        workload,
        hardware,
    )
}

/// The measured rows the predictor can use, and for each other row why not.
pub fn observations(
    rows: &[RunRow],
    workload: Workload,
    hardware: &Hardware,
) -> (Vec<Observation>, Vec<String>) {
    let mut obs = Vec::new();
    let mut skipped = Vec::new();
    for r in rows.iter().filter(|r| !r.predicted) {
        let (Some(ms), Some(tok_s), true) =
            (r.latency_ms_per_token, r.output_throughput_tok_s, r.is_ok())
        else {
            skipped.push(format!(
                "{} c={}: not measured",
                r.id.deployment, r.id.concurrency
            ));
            continue;
        };
        match row_candidate(r, workload, hardware) {
            Ok(candidate) => obs.push(Observation {
                candidate,
                ms_per_token: ms,
                output_throughput_tok_s: tok_s,
                label: r.id.deployment.clone(),
            }),
            Err(e) => skipped.push(format!("{} c={}: {e}", r.id.deployment, r.id.concurrency)),
        }
    }
    (obs, skipped)
}

/// A predicted row, priced as a measured one would be; a candidate that does
/// not fit is a row with its memory figures as the reason and no numbers.
pub fn predicted_row(model_label: &str, c: &Candidate, p: &Prediction, prices: &Catalog) -> RunRow {
    let tp = if c.tp == c.hardware.devices {
        String::new()
    } else {
        format!(" tp{}", c.tp)
    };
    let id = Identity {
        deployment: format!("{model_label} {} {}{tp}", c.quant.name, c.hardware.instance),
        model: model_label.to_string(),
        quantization: c.quant.name.clone(),
        instance: c.hardware.instance.clone(),
        concurrency: c.concurrency,
    };
    let price = prices.price(&c.hardware.instance);
    let mut row = match (p.ms_per_token, p.output_throughput_tok_s) {
        (Some(ms), Some(tok_s)) => RunRow::measured(
            id,
            Some((ms, "server_ms_per_token")),
            TokensPerSecond(tok_s),
            price,
        ),
        _ => {
            let m = p.memory;
            RunRow::failed(
                id,
                format!(
                    "does not fit: weights {:.1} GiB + KV cache {:.1} GiB + reserve {:.1} GiB > {:.1} GiB per device (tp {})",
                    m.weights_gib, m.kv_gib, m.reserved_gib, m.available_gib, c.tp
                ),
                price,
            )
        }
    };
    row.predicted = true;
    row
}

/// Whether a row is a prediction that fitted.
pub fn fits(r: &RunRow) -> bool {
    r.predicted && r.status == RunStatus::Ok
}

/// For every measured row, what `factors` predict for it.
pub fn compare(
    rows: &[RunRow],
    factors: &Factors,
    workload: Workload,
    hardware: &Hardware,
) -> Vec<Comparison> {
    rows.iter()
        .enumerate()
        .filter(|(_, r)| !r.predicted && r.is_ok())
        .map(|(i, r)| match row_candidate(r, workload, hardware) {
            Ok(c) => {
                let p = perf::predict(&c, factors);
                Comparison {
                    row: i,
                    ms_per_token: p.ms_per_token,
                    output_throughput_tok_s: p.output_throughput_tok_s,
                    note: (p.ms_per_token.is_none()).then(|| "does not fit".to_string()),
                }
            }
            Err(e) => Comparison {
                row: i,
                ms_per_token: None,
                output_throughput_tok_s: None,
                note: Some(e.to_string()),
            },
        })
        .collect()
}

/// Fits factors on `rows` (and any extra calibration rows) and the
/// comparison of every measured row: what `--predict` adds to a report.
pub fn fit_and_compare(
    rows: &[RunRow],
    extra: &[RunRow],
    workload: Workload,
    hardware: &Hardware,
) -> Result<(Factors, Vec<Comparison>)> {
    let all: Vec<RunRow> = rows.iter().chain(extra).cloned().collect();
    let (obs, _) = observations(&all, workload, hardware);
    let fit = servebench_predict::fit::fit(&obs, None)?;
    let comparison = compare(rows, &fit.factors, workload, hardware);
    Ok((fit.factors, comparison))
}

/// The 2023 CSV beside the repository, when present (tests).
pub fn shared_2023_csv() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/llama2-sagemaker-2023.csv");
    p.exists().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use servebench_predict::validate::{validate, Holdout};

    fn study_2023() -> Option<Vec<Observation>> {
        let Some(csv) = shared_2023_csv() else {
            assert!(
                std::env::var("SERVEBENCH_REQUIRE_PEERS").as_deref() != Ok("1"),
                "the 2023 CSV is missing"
            );
            eprintln!("skipped: ../shared/data/llama2-sagemaker-2023.csv is missing");
            return None;
        };
        let rows = load_calibration(&[csv], &Catalog::embedded()).unwrap();
        let (obs, skipped) = observations(&rows, Workload::default(), &Hardware::embedded());
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(obs.len(), 60);
        Some(obs)
    }

    #[test]
    fn the_2023_study_leave_one_out_targets() {
        let Some(obs) = study_2023() else { return };
        for (holdout, limit) in [
            (Holdout::Row, 10.0),
            (Holdout::Instance, 25.0),
            (Holdout::Model, 25.0),
        ] {
            let v = validate(&obs, holdout).unwrap();
            let e = v.errors;
            eprintln!("{holdout:?}: {e:?}");
            assert!(
                e.ms_per_token_median_pct <= limit && e.throughput_median_pct <= limit,
                "{holdout:?}: {e:?}"
            );
        }
    }

    #[test]
    fn a_70b_fp16_on_one_a10g_does_not_fit_and_says_why() {
        let hw = Hardware::embedded();
        let c = candidate(
            "llama-2-70b",
            "none",
            "ml.g5.2xlarge",
            None,
            1,
            Workload::default(),
            &hw,
        )
        .unwrap();
        let p = perf::predict(&c, &Factors::default());
        assert!(p.ms_per_token.is_none() && p.output_throughput_tok_s.is_none());
        let row = predicted_row("Llama 2 70B", &c, &p, &Catalog::embedded());
        let e = row.error.clone().unwrap();
        assert!(
            e.contains("does not fit") && e.contains("weights 128."),
            "{e}"
        );
        assert!(row.predicted && !row.is_ok() && row.cost_per_1m_tokens_usd.is_none());
        assert!(candidate(
            "llama-2-7b",
            "none",
            "ml.g5.2xlarge",
            Some(2),
            1,
            Workload::default(),
            &hw
        )
        .is_err());
    }
}
