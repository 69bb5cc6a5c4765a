//! `servebench study`: runs a study (the embedded default or `--config`)
//! with servebench-study, this binary serving the local deployments.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use servebench_loadgen::Cancel;
use servebench_study::config::StudyConfig;
use servebench_study::prices::Catalog;
use servebench_study::{report, runner};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// study.toml; default: the embedded study (SmolLM2-135M at q4_1, q8_0
    /// and f16 on 1 and 2 CPU threads, 1/5/10/20 concurrent requests).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output folder (default results/<UTC timestamp>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Levels 1, 5 and 20 only, 1 s windows, no warm-up, no pause.
    #[arg(long)]
    quick: bool,
    /// Complete the study in --out: runs saved as measured are skipped.
    #[arg(long, requires = "out")]
    resume: bool,
    /// Price catalog replacing the repository's prices.toml.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// How long a local server may take to load its model and become healthy.
    #[arg(long, default_value = "180s", value_parser = servebench_loadgen::units::parse_duration)]
    ready_timeout: Duration,
    /// Show servebench predict's figures beside every measured run, with the
    /// error (factors fitted on the study's runs and any --calibrate runs).
    #[arg(long)]
    predict: bool,
    /// More measured runs for --predict's fit (runs.jsonl, study folders, the 2023 CSV).
    #[arg(long, num_args = 1.., requires = "predict")]
    calibrate: Vec<PathBuf>,
    /// Send SageMaker deployments' requests here instead of AWS's runtime
    /// (default: AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, then AWS_ENDPOINT_URL).
    #[arg(long)]
    aws_endpoint_url: Option<String>,
    /// Leave the SageMaker endpoints the study created running afterwards.
    #[arg(long)]
    keep_endpoints: bool,
    /// How long a SageMaker endpoint may take to become InService.
    #[arg(long, default_value = "30m", value_parser = servebench_loadgen::units::parse_duration)]
    endpoint_timeout: Duration,
    /// How often a SageMaker endpoint's status is asked for while waiting.
    #[arg(long, default_value = "15s", value_parser = servebench_loadgen::units::parse_duration)]
    endpoint_poll: Duration,
    /// SageMaker deployments created and measured side by side, at most this
    /// many at once (local deployments always run one at a time).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    parallel: u32,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    // Everything is checked before anything runs.
    let mut study = match &a.config {
        Some(p) => StudyConfig::load(p)?,
        None => StudyConfig::embedded(),
    };
    if a.quick {
        study.quick();
    }
    let prices = match &a.prices {
        Some(p) => Catalog::load(p)?,
        None => Catalog::embedded(),
    };
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("results").join(runner::timestamp()));
    let server_bin = std::env::current_exe().context("finding the servebench binary")?;
    // One thread, as `bench`: the generator stays light next to the servers.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let (handle, cancel) = Cancel::new();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping; what was measured is saved (--resume completes it)");
                handle.cancel();
            }
        });
        let opts = runner::Options {
            out: out.clone(),
            resume: a.resume,
            server_bin,
            prices: prices.clone(),
            ready_timeout: a.ready_timeout,
            cancel,
            aws_endpoint_url: a.aws_endpoint_url.clone(),
            keep_endpoints: a.keep_endpoints,
            endpoint_timeout: a.endpoint_timeout,
            endpoint_poll: a.endpoint_poll,
            parallel: a.parallel as usize,
        };
        let rows = runner::run(&study, &opts).await?;
        if a.predict {
            let workload = servebench_predict::perf::Workload {
                new_tokens: study.deployments.first().map_or(50, |d| d.plan.max_new_tokens),
                ..Default::default()
            };
            let compared = super::report::comparison(true, &a.calibrate, &rows, &prices, workload)?;
            report::write_compared(&out, study.name.clone(), runner::notes(&study, &out, &rows), &rows, compared)?;
        }
        let failed = rows.iter().filter(|r| !r.is_ok()).count();
        println!("{}", out.join("report.md").display());
        if failed > 0 {
            eprintln!("study: {failed} run(s) failed; see report.md (All runs) and runs/<deployment>/server.log");
        }
        anyhow::Ok(())
    })
}
