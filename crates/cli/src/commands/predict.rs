//! `servebench predict`: latency, throughput and cost of deployments nobody
//! has run (crates/predict), calibrated on measured runs, written as the
//! study's report (crates/study); `--validate` says how far to trust it.

use std::path::PathBuf;

use anyhow::Context;
use servebench_predict::fit::{self, Fit};
use servebench_predict::hardware::Catalog as Hardware;
use servebench_predict::perf::{self, Factors, Workload};
use servebench_predict::validate::{self, Holdout};
use servebench_study::config::StudyConfig;
use servebench_study::prices::Catalog;
use servebench_study::row::RunRow;
use servebench_study::{predicted, report};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Models, comma-separated: llama-2-7b, llama-2-13b, llama-2-70b (presets),
    /// a .gguf file, or an HF config.json.
    #[arg(long, value_delimiter = ',')]
    model: Vec<String>,
    /// Quantizations, comma-separated: none (fp16), gptq, or GGUF types (q4_1, q8_0, ...).
    #[arg(long, value_delimiter = ',', default_value = "none")]
    quantize: Vec<String>,
    /// Instances, comma-separated, as named in hardware.toml (or cpu-N).
    #[arg(long, value_delimiter = ',')]
    instance: Vec<String>,
    /// Tensor-parallel degrees, comma-separated (default: every accelerator
    /// of the instance). Degrees an instance cannot give are skipped.
    #[arg(long, value_delimiter = ',')]
    tp: Vec<u32>,
    /// Concurrent requests (closed loop), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,20")]
    concurrency: Vec<u32>,
    /// Take the grid from a study.toml instead (its deployments and levels).
    #[arg(long, conflicts_with_all = ["model", "instance"])]
    config: Option<PathBuf>,
    /// Measured runs to fit the factors on: runs.jsonl (or a study folder)
    /// and/or the 2023 CSV. Without, the datasheet figures are used as they are.
    #[arg(long, num_args = 1..)]
    calibrate: Vec<PathBuf>,
    /// Validate instead of predicting: refit without each --holdout group of
    /// these runs and report the errors on it.
    #[arg(long, num_args = 1.., conflicts_with_all = ["calibrate", "json"])]
    validate: Vec<PathBuf>,
    /// What --validate holds out: row, instance, model or level.
    #[arg(long, default_value = "row", value_parser = |s: &str| s.parse::<Holdout>())]
    holdout: Holdout,
    /// Print one JSON object per candidate on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Write report.md, report.html and runs.csv here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Put the calibration runs in the report too, beside the predictions.
    #[arg(long, requires = "out")]
    with_measured: bool,
    /// A hardware catalog replacing the repository's hardware.toml.
    #[arg(long)]
    hardware: Option<PathBuf>,
    /// A price catalog replacing the repository's prices.toml.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Prompt tokens per request (the 2023 study's prompt: 12).
    #[arg(long, default_value_t = 12)]
    prompt_tokens: u32,
    /// New tokens per request.
    #[arg(long, default_value_t = 50)]
    new_tokens: u32,
}

/// One grid point as named: model, quantization, instance, tensor-parallel
/// degree (`None`: every accelerator), concurrency.
type Point = (String, String, String, Option<u32>, u32);

/// The catalogs and workload every path needs.
struct Setup {
    hardware: Hardware,
    prices: Catalog,
    workload: Workload,
}

impl Args {
    fn setup(&self) -> anyhow::Result<Setup> {
        anyhow::ensure!(self.new_tokens > 0, "--new-tokens must be at least 1");
        Ok(Setup {
            hardware: match &self.hardware {
                Some(p) => Hardware::load(p)?,
                None => Hardware::embedded(),
            },
            prices: match &self.prices {
                Some(p) => Catalog::load(p)?,
                None => Catalog::embedded(),
            },
            workload: Workload {
                prompt_tokens: self.prompt_tokens,
                new_tokens: self.new_tokens,
            },
        })
    }

    /// `(model, quantize, instance, tp, concurrency)` of every candidate.
    fn grid(&self) -> anyhow::Result<Vec<Point>> {
        anyhow::ensure!(
            !self.concurrency.contains(&0),
            "--concurrency values must be at least 1"
        );
        let mut grid = Vec::new();
        if let Some(path) = &self.config {
            let study = StudyConfig::load(path)?;
            for d in &study.deployments {
                for &c in &d.plan.levels {
                    grid.push((
                        d.model.clone(),
                        d.quantization.clone(),
                        d.instance.clone(),
                        None,
                        c,
                    ));
                }
            }
            return Ok(grid);
        }
        anyhow::ensure!(
            !self.model.is_empty() && !self.instance.is_empty(),
            "give --model and --instance (or --config study.toml, or --validate FILE)"
        );
        let tps: Vec<Option<u32>> = if self.tp.is_empty() {
            vec![None]
        } else {
            self.tp.iter().map(|&t| Some(t)).collect()
        };
        for m in &self.model {
            for q in &self.quantize {
                for i in &self.instance {
                    for &tp in &tps {
                        for &c in &self.concurrency {
                            grid.push((m.clone(), q.clone(), i.clone(), tp, c));
                        }
                    }
                }
            }
        }
        Ok(grid)
    }
}

/// Prints the fitted factors and every run's residuals.
fn print_fit(fit: &Fit, skipped: &[String]) {
    eprintln!(
        "fitted factors (multipliers of the datasheet figures and defaults; see docs/predict.md):"
    );
    for (k, v) in &fit.factors.log {
        eprintln!("  {k:<28} {:>9.4}", v.exp());
    }
    eprintln!("residuals (predicted / measured - 1):");
    eprintln!(
        "  {:<48} {:>5} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7}",
        "run", "c", "ms/tok", "pred", "err", "tok/s", "pred", "err"
    );
    for r in &fit.residuals {
        let (e_ms, e_tok) = r.errors();
        eprintln!(
            "  {:<48} {:>5} {:>9.2} {:>9.2} {:>+6.1}% {:>9.2} {:>9.2} {:>+6.1}%",
            r.label,
            r.concurrency,
            r.measured_ms_per_token,
            r.predicted_ms_per_token,
            e_ms * 100.0,
            r.measured_tok_s,
            r.predicted_tok_s,
            e_tok * 100.0
        );
    }
    let e = validate::errors(&fit.residuals);
    eprintln!(
        "in-sample: median |error| ms/token {:.1}%, throughput {:.1}% ({} runs)",
        e.ms_per_token_median_pct,
        e.throughput_median_pct,
        fit.residuals.len()
    );
    for s in skipped {
        eprintln!("  not used: {s}");
    }
}

fn run_validate(a: &Args, s: &Setup) -> anyhow::Result<()> {
    let rows = predicted::load_calibration(&a.validate, &s.prices)?;
    let (obs, skipped) = predicted::observations(&rows, s.workload, &s.hardware);
    for r in &skipped {
        eprintln!("not used: {r}");
    }
    let v = validate::validate(&obs, a.holdout)?;
    println!(
        "holdout {:?}: {} groups, {} runs",
        a.holdout,
        v.groups.len(),
        obs.len()
    );
    println!(
        "{:<48} {:>6} {:>12} {:>12} {:>12} {:>12}",
        "held out", "runs", "ms/tok med%", "ms/tok p90%", "tok/s med%", "tok/s p90%"
    );
    let line = |name: &str, n: usize, e: &validate::Errors| {
        println!(
            "{name:<48} {n:>6} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
            e.ms_per_token_median_pct,
            e.ms_per_token_p90_pct,
            e.throughput_median_pct,
            e.throughput_p90_pct
        )
    };
    if a.holdout != Holdout::Row {
        for g in &v.groups {
            line(&g.name, g.residuals.len(), &g.errors);
        }
    }
    line("all held-out runs", obs.len(), &v.errors);
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let s = a.setup()?;
    if !a.validate.is_empty() {
        return run_validate(&a, &s);
    }
    let grid = a.grid()?;
    let calibration = predicted::load_calibration(&a.calibrate, &s.prices)?;
    let factors = if calibration.is_empty() {
        eprintln!("predict: no --calibrate runs: datasheet figures at face value, uncalibrated");
        Factors::default()
    } else {
        let (obs, skipped) = predicted::observations(&calibration, s.workload, &s.hardware);
        let fit = fit::fit(&obs, None).context("fitting the factors to --calibrate runs")?;
        print_fit(&fit, &skipped);
        fit.factors
    };
    let mut rows: Vec<RunRow> = Vec::new();
    for (model, quantize, instance, tp, c) in &grid {
        let cand =
            match predicted::candidate(model, quantize, instance, *tp, *c, s.workload, &s.hardware)
            {
                Ok(cand) => cand,
                // A degree the instance cannot give is not a candidate.
                Err(servebench_predict::PredictError::Tp { .. }) if !a.tp.is_empty() => continue,
                Err(e) => return Err(e.into()),
            };
        let p = perf::predict(&cand, &factors);
        let row = predicted::predicted_row(&predicted::model_label(model), &cand, &p, &s.prices);
        if a.json {
            let obj = serde_json::json!({
                "model": model,
                "quantize": cand.quant.name,
                "instance": instance,
                "tp": cand.tp,
                "concurrency": c,
                "fits": p.ms_per_token.is_some(),
                "ms_per_token": p.ms_per_token,
                "output_throughput_tok_s": p.output_throughput_tok_s,
                "minutes_per_1m_tokens": row.minutes_per_1m_tokens,
                "cost_per_1m_tokens_usd": row.cost_per_1m_tokens_usd,
                "memory_gib_per_device": {
                    "weights": p.memory.weights_gib,
                    "kv_cache": p.memory.kv_gib,
                    "reserved": p.memory.reserved_gib,
                    "available": p.memory.available_gib,
                },
                "error": row.error,
            });
            println!("{obj}");
        }
        rows.push(row);
    }
    if !a.json {
        println!(
            "{:<44} {:>5} {:>10} {:>10} {:>10} {:>10}",
            "deployment", "c", "ms/token", "tok/s", "min/1M", "$/1M"
        );
        for r in &rows {
            let f = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
            println!(
                "{:<44} {:>5} {:>10} {:>10} {:>10} {:>10}{}",
                r.id.deployment,
                r.id.concurrency,
                f(r.latency_ms_per_token),
                f(r.output_throughput_tok_s),
                f(r.minutes_per_1m_tokens),
                f(r.cost_per_1m_tokens_usd),
                r.error
                    .as_deref()
                    .map(|e| format!("  {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(out) = &a.out {
        let predicted_n = rows.len();
        if a.with_measured {
            rows.extend(calibration.iter().cloned());
        }
        let notes = vec![
            format!(
                "Predicted by servebench predict: {predicted_n} candidates, {} prompt and {} new tokens per request, calibrated on {} measured runs ({}).",
                s.workload.prompt_tokens,
                s.workload.new_tokens,
                calibration.len(),
                a.calibrate.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            "Rows marked (predicted) are the model's estimates (docs/predict.md), not measurements.".into(),
        ];
        report::write_for_rows(out, "servebench predict".into(), notes, &rows)?;
        eprintln!("wrote {}/report.md, report.html, runs.csv", out.display());
    }
    Ok(())
}
