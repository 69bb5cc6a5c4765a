//! `servebench report`: re-renders a study's report from its saved runs, or
//! writes the same report from the 2023 study's raw CSV.

use std::path::PathBuf;

use anyhow::Context;
use servebench_study::prices::Catalog;
use servebench_study::{import_2023, report, store};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A study's output folder (its runs.jsonl); the report is written back there
    /// unless --out says otherwise.
    #[arg(
        long,
        required_unless_present = "import_2023",
        conflicts_with = "import_2023"
    )]
    from: Option<PathBuf>,
    /// The 2023 study's raw CSV (shared/data/llama2-sagemaker-2023.csv).
    #[arg(long = "import-2023", value_name = "FILE.csv", requires = "out")]
    import_2023: Option<PathBuf>,
    /// Where report.md, report.html, runs.csv (and, for an import, runs.jsonl) go.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A price catalog replacing the repository's prices.toml (imports only:
    /// saved runs keep the prices they were measured with).
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Show servebench predict's figures beside every measured run, with the
    /// error (factors fitted on these runs and any --calibrate runs).
    #[arg(long)]
    predict: bool,
    /// More measured runs for --predict's fit (runs.jsonl, study folders, the 2023 CSV).
    #[arg(long, num_args = 1.., requires = "predict")]
    calibrate: Vec<PathBuf>,
}

/// What `--predict` adds: the comparison of every measured row (none without it).
pub fn comparison(
    predict: bool,
    calibrate: &[PathBuf],
    rows: &[servebench_study::row::RunRow],
    prices: &Catalog,
    workload: servebench_predict::perf::Workload,
) -> anyhow::Result<Vec<report::Comparison>> {
    if !predict {
        return Ok(Vec::new());
    }
    let extra = servebench_study::predicted::load_calibration(calibrate, prices)?;
    let hardware = servebench_predict::hardware::Catalog::embedded();
    let (_, comparison) =
        servebench_study::predicted::fit_and_compare(rows, &extra, workload, &hardware)
            .context("--predict: fitting the predictor to these runs")?;
    Ok(comparison)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let prices = match &a.prices {
        Some(p) => Catalog::load(p)?,
        None => Catalog::embedded(),
    };
    if let Some(csv) = &a.import_2023 {
        let out = a.out.as_ref().context("--import-2023 needs --out DIR")?;
        let rows = import_2023::load(csv, &prices)?;
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        store::write(out, &rows)?;
        let priced = rows
            .iter()
            .filter(|r| r.cost_per_1m_tokens_usd.is_some())
            .count();
        let notes = vec![
            format!("Imported from {} ({} rows, {priced} priced).", csv.display(), rows.len()),
            "Source: the 2023 study \"Llama 2 on Amazon SageMaker a Benchmark\" (Hugging Face), TGI 1.0.3, k6 constant VUs for 90 s, 50 new tokens.".into(),
            "Throughput is the CSV's figure, which the study computed as VUs x 50 x 1000 / mean request latency (our `study_throughput_tok_s`), not measured tokens over time.".into(),
        ];
        let compared = comparison(a.predict, &a.calibrate, &rows, &prices, Default::default())?;
        report::write_compared(
            out,
            "Llama 2 on Amazon SageMaker (2023), re-reported".into(),
            notes,
            &rows,
            compared,
        )?;
        eprintln!(
            "{} rows ({priced} priced) -> {}/report.md, report.html, runs.csv, runs.jsonl",
            rows.len(),
            out.display()
        );
        return Ok(());
    }
    let from = a
        .from
        .as_ref()
        .context("give --from DIR or --import-2023 FILE")?;
    let rows = store::read(from)?;
    anyhow::ensure!(
        !rows.is_empty(),
        "{} holds no saved runs (runs.jsonl)",
        from.display()
    );
    let out = a.out.as_ref().unwrap_or(from);
    let notes = vec![format!(
        "Re-rendered from {}/runs.jsonl ({} runs).",
        from.display(),
        rows.len()
    )];
    let compared = comparison(a.predict, &a.calibrate, &rows, &prices, Default::default())?;
    report::write_compared(out, "servebench study".into(), notes, &rows, compared)?;
    eprintln!("wrote {}/report.md, report.html, runs.csv", out.display());
    Ok(())
}
