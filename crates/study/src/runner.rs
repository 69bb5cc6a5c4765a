//! The sweep: every deployment x load level, one after another. Each run is
//! appended to `runs.jsonl` and the reports are re-rendered as it ends, so
//! an interrupted study keeps what it measured; `--resume` re-runs only
//! runs not saved as measured. A deployment that fails to start, dies or
//! times out is recorded as failed and the study goes on.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use servebench_loadgen::api::RequestParams;
use servebench_loadgen::progress::ConsoleProgress;
use servebench_loadgen::{
    run_level, writers, Api, Cancel, Client, ClientConfig, LevelConfig, LoadModel, Prompt, Prompts,
    StopCondition,
};

use servebench_loadgen::api::sagemaker::{self as sagemaker_api, EndpointRef};
use servebench_loadgen::aws::{self, AwsSettings, AwsSigner};

use crate::config::{Deployment, StudyConfig, Target};
use crate::cost::TokensPerSecond;
use crate::deployment::{DeploymentError, LocalServer};
use crate::error::{Result, StudyError};
use crate::prices::Catalog;
use crate::report;
use crate::row::{Identity, RunRow};
use crate::sagemaker::{self, ControlPlane, Endpoint, EndpointRecord, EndpointSpec};
use crate::store;

/// How the study runs.
pub struct Options {
    pub out: PathBuf,
    pub resume: bool,
    /// The `servebench` binary that serves local deployments.
    pub server_bin: PathBuf,
    pub prices: Catalog,
    /// How long a local server may take to load and answer `/health`.
    pub ready_timeout: Duration,
    /// Ctrl-C: stops between and inside runs; what was measured is kept.
    pub cancel: Cancel,
    /// Where SageMaker requests go instead of AWS (`--aws-endpoint-url`).
    pub aws_endpoint_url: Option<String>,
    /// Leave the SageMaker endpoints a study created running (`--keep-endpoints`).
    pub keep_endpoints: bool,
    /// How long a SageMaker endpoint may take to become `InService`.
    pub endpoint_timeout: Duration,
    /// How often its status is asked for while waiting.
    pub endpoint_poll: Duration,
    /// SageMaker deployments run side by side, at most this many at once.
    pub parallel: usize,
}

/// `Ok(ms_per_token, metric)`: the server's figure where it sent one (the
/// 2023 study's definition), else the client's.
fn latency(s: &servebench_loadgen::RunSummary) -> Option<(f64, &'static str)> {
    match (&s.server_ms_per_token, &s.ms_per_token) {
        (Some(d), _) => Some((d.p50, "server_ms_per_token")),
        (None, Some(d)) => Some((d.p50, "ms_per_token")),
        _ => None,
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `YYYYmmdd-HHMMSS` in UTC, for the default output folder.
pub fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn identity(d: &Deployment, concurrency: u32) -> Identity {
    Identity {
        deployment: d.name.clone(),
        model: d.model.clone(),
        quantization: d.quantization.clone(),
        instance: d.instance.clone(),
        concurrency,
    }
}

/// A started deployment: where to send requests, and the local server if any.
struct Live {
    url: String,
    api: Api,
    api_key: Option<String>,
    /// SigV4 for SageMaker endpoints.
    signer: Option<AwsSigner>,
    server: Option<LocalServer>,
    /// The endpoint the study created, deleted after the last level.
    endpoint: Option<Endpoint>,
}

/// `servebench serve` flags of a local deployment; `preset:NAME` models are
/// written once with `make-model` into `out/models/`.
fn serve_args(
    opts: &Options,
    model: &str,
    quantize: &Option<String>,
    threads: u32,
    extra: &[String],
) -> std::result::Result<Vec<String>, DeploymentError> {
    let model = match model.strip_prefix("preset:") {
        Some(preset) => {
            let dir = opts.out.join("models");
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{preset}.gguf"));
            if !path.exists() {
                let out = std::process::Command::new(&opts.server_bin)
                    .args([
                        "make-model",
                        "--arch-preset",
                        preset,
                        "--quant",
                        "f16",
                        "--seed",
                        "1",
                        "--out",
                    ])
                    .arg(&path)
                    .output()?;
                if !out.status.success() {
                    return Err(DeploymentError::Exited {
                        status: format!("make-model {}", out.status),
                        log_tail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
            }
            path.display().to_string()
        }
        None => model.to_string(),
    };
    let mut args = vec![
        "--model".into(),
        model,
        "--threads".into(),
        threads.to_string(),
    ];
    if let Some(q) = quantize {
        args.extend(["--quantize".into(), q.clone()]);
    }
    args.extend(extra.iter().cloned());
    Ok(args)
}

async fn start(d: &Deployment, opts: &Options) -> std::result::Result<Live, DeploymentError> {
    match &d.target {
        Target::Local {
            model,
            quantize,
            threads,
            server_args,
        } => {
            let args = serve_args(opts, model, quantize, *threads, server_args)?;
            let dir = opts.out.join("runs").join(&d.name);
            std::fs::create_dir_all(&dir)?;
            let server = LocalServer::start(
                &opts.server_bin,
                &args,
                &dir.join("server.log"),
                opts.ready_timeout,
            )
            .await?;
            eprintln!(
                "study: {}: server pid {} at {}",
                d.name,
                server.pid(),
                server.url
            );
            Ok(Live {
                url: server.url.clone(),
                api: Api::Tgi,
                api_key: None,
                signer: None,
                server: Some(server),
                endpoint: None,
            })
        }
        Target::Sagemaker {
            model,
            image,
            env,
            role_arn,
            instance_count,
            region,
        } => {
            let aws = |e: servebench_loadgen::LoadgenError| DeploymentError::Aws(e);
            let settings = AwsSettings::load(region.as_deref()).await.map_err(aws)?;
            let control_url = aws::endpoint_url(opts.aws_endpoint_url.as_deref(), "SAGEMAKER");
            let control = ControlPlane::new(settings.signer("sagemaker"), control_url.as_deref())
                .map_err(|e| DeploymentError::Sagemaker(e.to_string()))?;
            let image = match image {
                Some(i) => i.clone(),
                None => sagemaker::image::default_image(&settings.region).ok_or_else(|| {
                    DeploymentError::Sagemaker(format!(
                        "no Hugging Face LLM container is published in {}; set `image`",
                        settings.region
                    ))
                })?,
            };
            let spec = EndpointSpec {
                name: sagemaker::resource_name(&d.name, &timestamp()),
                image,
                model: model.clone(),
                env: env.clone(),
                role_arn: role_arn.clone(),
                instance: d.instance.clone(),
                instance_count: *instance_count,
            };
            let name = spec.name.clone();
            eprintln!(
                "study: {}: creating SageMaker endpoint {name} ({} x {}, {})",
                d.name, instance_count, d.instance, spec.image
            );
            let endpoint = match Endpoint::create(control, spec).await {
                Ok(e) => e,
                Err(failure) => {
                    let (_, errors) = failure.leftover.delete().await;
                    return Err(DeploymentError::Sagemaker(cleanup_note(
                        failure.error,
                        &errors,
                    )));
                }
            };
            let cancel = opts.cancel.clone();
            if let Err(e) = endpoint
                .wait_in_service(opts.endpoint_poll, opts.endpoint_timeout, || {
                    cancel.is_cancelled()
                })
                .await
            {
                let (_, errors) = endpoint.delete().await;
                return Err(DeploymentError::Sagemaker(cleanup_note(e, &errors)));
            }
            eprintln!("study: {}: endpoint {name} InService", d.name);
            let runtime = aws::endpoint_url(opts.aws_endpoint_url.as_deref(), "SAGEMAKER_RUNTIME");
            let url = EndpointRef {
                name: name.clone(),
                region: None,
            }
            .base_url(runtime.as_deref(), &settings.region);
            let url = match url {
                Ok(u) => u,
                Err(e) => {
                    let (_, errors) = endpoint.delete().await;
                    return Err(DeploymentError::Sagemaker(cleanup_note(
                        e.to_string(),
                        &errors,
                    )));
                }
            };
            Ok(Live {
                url,
                api: Api::Sagemaker,
                api_key: None,
                signer: Some(settings.signer(sagemaker_api::SIGNING_SERVICE)),
                server: None,
                endpoint: Some(endpoint),
            })
        }
        Target::Remote {
            url,
            api: Api::Sagemaker,
            ..
        } => {
            let endpoint = EndpointRef::parse(url).map_err(DeploymentError::Aws)?;
            let settings = AwsSettings::load(endpoint.region.as_deref())
                .await
                .map_err(DeploymentError::Aws)?;
            let runtime = aws::endpoint_url(opts.aws_endpoint_url.as_deref(), "SAGEMAKER_RUNTIME");
            let signer = settings.signer(sagemaker_api::SIGNING_SERVICE);
            signer.credentials().await.map_err(DeploymentError::Aws)?;
            Ok(Live {
                url: endpoint
                    .base_url(runtime.as_deref(), &settings.region)
                    .map_err(DeploymentError::Aws)?,
                api: Api::Sagemaker,
                api_key: None,
                signer: Some(signer),
                server: None,
                endpoint: None,
            })
        }
        Target::Remote {
            url,
            api,
            api_key_env,
        } => {
            let api_key = match api_key_env {
                Some(var) => {
                    Some(std::env::var(var).map_err(|_| DeploymentError::MissingKey(var.clone()))?)
                }
                None => None,
            };
            Ok(Live {
                url: url.trim_end_matches('/').to_string(),
                api: *api,
                api_key,
                signer: None,
                server: None,
                endpoint: None,
            })
        }
    }
}

/// A creation error, and the cleanup's own errors when it could not delete
/// everything (the user must then delete those resources by hand).
fn cleanup_note(error: String, cleanup_errors: &[String]) -> String {
    if cleanup_errors.is_empty() {
        error
    } else {
        format!(
            "{error}; cleaning up also failed, delete by hand: {}",
            cleanup_errors.join("; ")
        )
    }
}

/// Stops a deployment: a local server is stopped, a SageMaker endpoint
/// deleted (or kept with `--keep-endpoints`); returns the endpoint's record.
async fn finish(live: Live, d: &Deployment, opts: &Options) -> Option<EndpointRecord> {
    if let Some(server) = live.server {
        server.stop(Duration::from_secs(10)).await;
    }
    let endpoint = live.endpoint?;
    if opts.keep_endpoints {
        eprintln!(
            "study: {}: keeping endpoint {} (--keep-endpoints): it bills until you delete it",
            d.name,
            endpoint.name()
        );
        return Some(endpoint.record(None));
    }
    let name = endpoint.name().to_string();
    let (record, errors) = endpoint.delete().await;
    for e in &errors {
        eprintln!("study: {}: deleting {name}: {e}", d.name);
    }
    if errors.is_empty() {
        eprintln!(
            "study: {}: endpoint {name} deleted ({:.3} instance-hours)",
            d.name, record.billed_instance_hours
        );
    }
    Some(record)
}

/// One level against a live deployment: the row and, when measured, the
/// bench files under `runs/<deployment>/c<N>/`.
async fn run_one(d: &Deployment, live: &Live, concurrency: u32, opts: &Options) -> Result<RunRow> {
    let id = identity(d, concurrency);
    let price = opts.prices.price(&d.instance);
    let p = &d.plan;
    let config = ClientConfig {
        base_url: live.url.clone(),
        api: live.api,
        params: RequestParams {
            stream: p.stream,
            model_name: None,
            ignore_eos: p.ignore_eos,
            temperature: None,
            extra_body: None,
        },
        api_key: live.api_key.clone(),
        timeout: p.timeout,
    };
    let client = match &live.signer {
        Some(signer) => Client::signed(config, signer.clone())?,
        None => Client::new(config)?,
    };
    let prompts = Prompts::new(vec![Prompt::new(p.prompt.clone(), p.max_new_tokens)])?;
    let level = LevelConfig {
        load: LoadModel::Closed { concurrency },
        stop: StopCondition {
            duration: p.duration,
            requests: p.requests,
        },
        warmup: p.warmup,
        pause: p.pause,
        slo: p.slo.clone(),
        seed: 0,
    };
    // The level stops early when the server dies (or Ctrl-C), rather than
    // spinning on refused connections until its window ends.
    let (handle, cancel) = Cancel::new();
    let mut outer = opts.cancel.clone();
    let exited = live.server.as_ref().map(|s| s.watcher());
    let watch = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = outer.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if exited.as_ref().and_then(|f| f()).is_some() {
                        break;
                    }
                }
            }
        }
        handle.cancel();
    });
    let result = run_level(
        &client,
        &prompts,
        &level,
        Arc::new(ConsoleProgress::new()),
        &cancel,
    )
    .await;
    watch.abort();
    let result = match result {
        Ok(r) => r,
        Err(e) => return Ok(RunRow::failed(id, e.to_string(), price)),
    };
    let dir = opts
        .out
        .join("runs")
        .join(&d.name)
        .join(format!("c{concurrency}"));
    writers::write_all(
        &dir,
        std::slice::from_ref(&result),
        result.summary.info.interrupted,
    )?;
    let s = result.summary;
    let failure = if let Some(server) = live.server.as_ref().filter(|l| l.exit_status().is_some()) {
        Some(format!(
            "server exited during the run ({}); {}",
            server.exit_status().unwrap_or_default(),
            crate::deployment::log_tail(server.log())
        ))
    } else if s.info.interrupted {
        Some("interrupted".to_string())
    } else if s.success == 0 {
        let errors: Vec<String> = s
            .errors
            .iter()
            .map(|(k, n)| format!("{n} x {k:?}"))
            .collect();
        Some(format!("no request succeeded ({})", errors.join(", ")))
    } else {
        None
    };
    // A failed run keeps what the bench saw, for the record.
    let mut row = match failure {
        Some(reason) => RunRow::failed(id, reason, price),
        None => RunRow::measured(
            id,
            latency(&s),
            TokensPerSecond(s.output_throughput_tok_s),
            price,
        ),
    };
    row.summary = Some(s);
    Ok(row)
}

/// The state deployments share while they run, side by side or in turn.
/// Every borrow ends before an await (one thread runs them all).
struct Sweep<'a> {
    study: &'a StudyConfig,
    opts: &'a Options,
    /// Saved and finished rows.
    kept: RefCell<Vec<RunRow>>,
    /// Runs finished (saved ones included), for the progress lines.
    done: Cell<usize>,
    saved: usize,
    total: usize,
    started: Instant,
}

impl Sweep<'_> {
    /// Saves a finished row and re-renders the reports.
    fn save(&self, row: RunRow) -> Result<()> {
        store::append(&self.opts.out, &row)?;
        let mut kept = self.kept.borrow_mut();
        kept.push(row);
        self.render(&kept)
    }

    fn render(&self, kept: &[RunRow]) -> Result<()> {
        let (study, out) = (self.study, &self.opts.out);
        let rows = order(study, kept);
        report::write_for_rows(out, study.name.clone(), notes(study, out, &rows), &rows)
    }

    /// One deployment: started, its missing levels run, stopped (an
    /// endpoint deleted whatever happened to its levels).
    async fn deployment(&self, d: &Deployment) -> Result<()> {
        let opts = self.opts;
        let missing: Vec<u32> = {
            let kept = self.kept.borrow();
            d.plan
                .levels
                .iter()
                .copied()
                .filter(|&c| !kept.iter().any(|r| r.key() == (d.name.clone(), c)))
                .collect()
        };
        if missing.is_empty() || opts.cancel.is_cancelled() {
            return Ok(());
        }
        eprintln!(
            "study: {}: starting ({} on {})",
            d.name, d.quantization, d.instance
        );
        let live = start(d, opts).await;
        let levels = self.levels(d, &live, &missing).await;
        if let Ok(live) = live {
            if let Some(record) = finish(live, d, opts).await {
                let mut kept = self.kept.borrow_mut();
                for r in kept.iter_mut().filter(|r| r.id.deployment == d.name) {
                    r.endpoint = Some(record.clone());
                }
                store::write(&opts.out, &order(self.study, &kept))?;
                self.render(&kept)?;
            }
        }
        levels
    }

    async fn levels(
        &self,
        d: &Deployment,
        live: &std::result::Result<Live, DeploymentError>,
        missing: &[u32],
    ) -> Result<()> {
        let (opts, total, saved) = (self.opts, self.total, self.saved);
        for &c in missing {
            if opts.cancel.is_cancelled() {
                break;
            }
            let done = self.done.get() + 1;
            self.done.set(done);
            let eta = if done > saved + 1 {
                let per = self.started.elapsed().as_secs_f64() / (done - saved - 1) as f64;
                format!(", about {:.0} s left", per * (total - done + 1) as f64)
            } else {
                String::new()
            };
            eprintln!(
                "study: [{done}/{total}] {} at {c} concurrent request(s){eta}",
                d.name
            );
            let mut row = match live {
                Ok(live) => run_one(d, live, c, opts).await?,
                Err(e) => RunRow::failed(
                    identity(d, c),
                    format!("deployment failed to start: {e}"),
                    opts.prices.price(&d.instance),
                ),
            };
            row.finished_at_unix_ms = now_unix_ms();
            match &row.error {
                None => eprintln!(
                    "study: [{done}/{total}] {} c={c}: {:.1} tokens/s, {:.2} ms/token, {}",
                    d.name,
                    row.output_throughput_tok_s.unwrap_or(0.0),
                    row.latency_ms_per_token.unwrap_or(f64::NAN),
                    row.cost_per_1m_tokens_usd
                        .map_or_else(|| "unpriced".into(), |c| format!("${c:.4} per 1M tokens")),
                ),
                Some(e) => eprintln!("study: [{done}/{total}] {} c={c}: FAILED: {e}", d.name),
            }
            self.save(row)?;
        }
        Ok(())
    }
}

/// Runs the study; returns every row (saved ones first kept, in plan order).
pub async fn run(study: &StudyConfig, opts: &Options) -> Result<Vec<RunRow>> {
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(StudyError::io(out))?;
    let kept: Vec<RunRow> = if opts.resume {
        store::read(out)?
            .into_iter()
            .filter(RunRow::is_ok)
            .collect()
    } else {
        if out.join(store::RUNS_JSONL).exists() {
            return Err(StudyError::Config {
                file: out.join(store::RUNS_JSONL).display().to_string(),
                line: 1,
                reason: "this folder already holds a study; pass --resume to complete it or choose another --out".into(),
            });
        }
        Vec::new()
    };
    // Failed runs are dropped from the file: they are about to be re-run.
    store::write(out, &kept)?;
    let resolved = out.join("study.toml");
    std::fs::write(&resolved, study.resolved_toml()).map_err(StudyError::io(&resolved))?;

    let total: usize = study.deployments.iter().map(|d| d.plan.levels.len()).sum();
    let saved = kept.len();
    if saved > 0 {
        eprintln!("study: resuming: {saved} of {total} runs already measured, skipped");
    }
    let sweep = Sweep {
        study,
        opts,
        kept: RefCell::new(kept),
        done: Cell::new(saved),
        saved,
        total,
        started: Instant::now(),
    };
    // SageMaker endpoints are separate machines: up to `parallel` of them
    // are created and measured side by side, each by its own load-generator
    // task. Local servers share this machine's cores with the generator, so
    // they run one at a time, after them.
    let (cloud, local): (Vec<&Deployment>, Vec<&Deployment>) = study
        .deployments
        .iter()
        .partition(|d| matches!(d.target, Target::Sagemaker { .. }));
    let cloud_results: Vec<Result<()>> = futures_util::stream::iter(cloud)
        .map(|d| sweep.deployment(d))
        .buffer_unordered(opts.parallel.max(1))
        .collect()
        .await;
    let mut first_error = cloud_results.into_iter().find_map(Result::err);
    for d in local {
        if first_error.is_some() {
            break;
        }
        first_error = sweep.deployment(d).await.err();
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let kept = sweep.kept.into_inner();
    let render = |rows: &[RunRow]| {
        report::write_for_rows(out, study.name.clone(), notes(study, out, rows), rows)
    };
    let started = sweep.started;
    let rows = order(study, &kept);
    store::write(out, &rows)?;
    render(&rows)?;
    eprintln!(
        "study: {} runs in {:.0} s -> {}/report.md",
        total - saved,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(rows)
}

/// Rows in the study's order (deployment, then level), whatever order they ran in.
fn order(study: &StudyConfig, rows: &[RunRow]) -> Vec<RunRow> {
    let mut out = Vec::new();
    for d in &study.deployments {
        for &c in &d.plan.levels {
            if let Some(r) = rows.iter().find(|r| r.key() == (d.name.clone(), c)) {
                out.push(r.clone());
            }
        }
    }
    out
}

/// The real spend of the SageMaker endpoints among `rows`: each endpoint's
/// billed instance-hours at its instance's price, once per endpoint.
fn sagemaker_spend(rows: &[RunRow]) -> Option<String> {
    let mut seen = std::collections::BTreeMap::new();
    for r in rows {
        if let Some(e) = &r.endpoint {
            seen.entry(e.endpoint_name.clone())
                .or_insert((e.clone(), r.price_per_hour_usd));
        }
    }
    if seen.is_empty() {
        return None;
    }
    let hours: f64 = seen.values().map(|(e, _)| e.billed_instance_hours).sum();
    let usd: f64 = seen
        .values()
        .filter_map(|(e, p)| p.map(|p| p * e.billed_instance_hours))
        .sum();
    let unpriced = seen.values().filter(|(_, p)| p.is_none()).count();
    Some(format!(
        "SageMaker spend: {} endpoint(s), {hours:.3} instance-hours from creation to deletion, ${usd:.2} at on-demand prices{}.",
        seen.len(),
        if unpriced > 0 { format!(" ({unpriced} endpoint(s) unpriced)") } else { String::new() }
    ))
}

/// The lines a study's report prints under its title.
pub fn notes(study: &StudyConfig, out: &Path, rows: &[RunRow]) -> Vec<String> {
    let Some(d) = study.deployments.first() else {
        return Vec::new();
    };
    let p = &d.plan;
    let stop = match (p.duration, p.requests) {
        (Some(t), Some(n)) => format!("{:.0} s or {n} requests", t.as_secs_f64()),
        (Some(t), None) => format!("{:.0} s", t.as_secs_f64()),
        (None, Some(n)) => format!("{n} requests"),
        (None, None) => "-".into(),
    };
    vec![
        format!(
            "{} deployments; closed-loop levels {:?}; {stop} per level after {} warm-up request(s) and a {:.0} s pause (as set for the first deployment; study.toml has each).",
            study.deployments.len(),
            p.levels,
            p.warmup,
            p.pause.as_secs_f64()
        ),
        format!(
            "Workload: \"{}\", {} new tokens{}, {}.",
            p.prompt,
            p.max_new_tokens,
            if p.ignore_eos { " (ignore_eos)" } else { "" },
            if p.stream { "streaming" } else { "non-streaming, as the 2023 study" }
        ),
        format!("Raw data: {0}/runs.csv, {0}/runs.jsonl, bench outputs per run in {0}/runs/.", out.display()),
    ]
    .into_iter()
    .chain(sagemaker_spend(rows))
    .collect()
}
