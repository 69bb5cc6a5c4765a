//! `servebench bench`: flags to a load-generator run (servebench-loadgen),
//! then the table and the files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use servebench_engine::{fetch, gguf::GgufFile, tokenizer::Tokenizer};
use servebench_loadgen::api::sagemaker::{self, EndpointRef};
use servebench_loadgen::api::{self, RequestParams};
use servebench_loadgen::aws::{self, AwsSettings};
use servebench_loadgen::progress::ConsoleProgress;
use servebench_loadgen::units::parse_duration;
use servebench_loadgen::workload::{self, InputTokens, DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT};
use servebench_loadgen::{
    run_level, sweep, writers, Api, Arrival, Cancel, Client, ClientConfig, LevelConfig,
    LevelResult, LoadModel, Prompt, Prompts, Slo, StopCondition,
};

/// Synthetic prompts drawn per run (cycled), enough to vary lengths.
const SYNTHETIC_PROMPTS: usize = 256;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Base URL of the server, e.g. http://127.0.0.1:8080, or
    /// sagemaker://ENDPOINT_NAME?region=us-west-2 with --api sagemaker.
    #[arg(long)]
    url: String,
    /// tgi, openai-completions, openai-chat or sagemaker.
    #[arg(long, default_value = "tgi", value_parser = parse_api)]
    api: Api,
    /// --api sagemaker: send to this URL instead of AWS's runtime endpoint
    /// (default: AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, then AWS_ENDPOINT_URL).
    #[arg(long)]
    aws_endpoint_url: Option<String>,
    /// Sent as `Authorization: Bearer K`.
    #[arg(long)]
    api_key: Option<String>,
    /// OpenAI `model`; default: the first of GET /v1/models.
    #[arg(long)]
    model_name: Option<String>,
    /// Closed loop: virtual users per level (default 1,5,10,20, the study's).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["rate", "sweep"])]
    concurrency: Vec<u32>,
    /// Open loop: arrivals per second per level.
    #[arg(long, value_delimiter = ',', conflicts_with = "sweep")]
    rate: Vec<f64>,
    /// Open-loop arrival process: poisson or constant.
    #[arg(long, default_value = "poisson", value_parser = parse_arrival)]
    arrival: Arrival,
    /// Open loop: arrivals beyond this many outstanding requests are dropped.
    #[arg(long, default_value_t = 512)]
    max_in_flight: u32,
    /// Measure saturation (closed loop at --sweep-concurrency), then open-loop
    /// rates spread below it.
    #[arg(long)]
    sweep: bool,
    /// --sweep: virtual users of the saturation level.
    #[arg(long, default_value_t = 64)]
    sweep_concurrency: u32,
    /// --sweep: open-loop rates below saturation.
    #[arg(long, default_value_t = 5)]
    sweep_steps: u32,
    /// Measured window per level (default 90s unless --requests is given).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Requests per level.
    #[arg(long)]
    requests: Option<u64>,
    /// Unmeasured requests before each level (the study's 2).
    #[arg(long, default_value_t = 2)]
    warmup: u32,
    /// Pause after the warm-up (the study's 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pause: Duration,
    /// The prompt of every request (the study's).
    #[arg(long, default_value = DEFAULT_PROMPT)]
    prompt: String,
    /// New tokens asked for per request (the study's 50).
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    max_new_tokens: u32,
    /// Ask the server to always generate --max-new-tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Sampling temperature (default greedy).
    #[arg(long)]
    temperature: Option<f64>,
    /// A JSON object merged into every request body (TGI: into
    /// `parameters`), e.g. '{"response_format": {...}}' or '{"grammar": {...}}'.
    #[arg(long, value_parser = parse_extra_body)]
    extra_body: Option<serde_json::Map<String, serde_json::Value>>,
    /// JSONL prompts: {"prompt": TEXT, "max_tokens": N?} per line.
    #[arg(long, conflicts_with = "input_tokens")]
    dataset: Option<PathBuf>,
    /// Synthetic prompts of MEAN[,STD] tokens.
    #[arg(long)]
    input_tokens: Option<String>,
    /// Tokenizer for --input-tokens: a GGUF file or `smollm2`; default: the
    /// server's TGI `/tokenize`.
    #[arg(long)]
    tokenizer: Option<String>,
    /// Objective for goodput_s, e.g. ttft_ms<=500 (repeatable).
    #[arg(long)]
    slo: Vec<String>,
    /// Per-request limit.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Write summary.json, summary.csv and requests.jsonl here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stream responses (default); needed for ttft_ms, tpot_ms, itl_ms.
    #[arg(long, overrides_with = "no_stream")]
    stream: bool,
    /// One JSON response per request, as the 2023 study sent them.
    #[arg(long, overrides_with = "stream")]
    no_stream: bool,
    /// Seeds arrivals and synthetic prompts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn parse_api(s: &str) -> Result<Api, String> {
    Api::parse(s)
        .ok_or_else(|| format!("`{s}`: one of tgi, openai-completions, openai-chat, sagemaker"))
}

fn parse_extra_body(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(s) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("a JSON object, e.g. '{\"grammar\": {...}}'".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

fn parse_arrival(s: &str) -> Result<Arrival, String> {
    Arrival::parse(s).ok_or_else(|| format!("`{s}`: poisson or constant"))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    // One thread: the generator must stay within one core (issue 4), and a
    // single-threaded scheduler keeps timestamps free of cross-thread handoffs.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let code = rt.block_on(bench(a))?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

async fn bench(a: Args) -> anyhow::Result<i32> {
    let slo: Vec<Slo> = a.slo.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let stop = StopCondition {
        duration: match (a.duration, a.requests) {
            (None, None) => Some(Duration::from_secs(90)),
            (d, _) => d,
        },
        requests: a.requests,
    };
    let mut config = ClientConfig {
        base_url: a.url.clone(),
        api: a.api,
        params: RequestParams {
            stream: !a.no_stream,
            model_name: a.model_name.clone(),
            ignore_eos: a.ignore_eos,
            temperature: a.temperature,
            extra_body: a.extra_body.clone(),
        },
        api_key: a.api_key.clone(),
        timeout: a.timeout,
    };
    let client = if a.api == Api::Sagemaker {
        sagemaker_client(&a, config).await?
    } else {
        let probe = Client::new(config.clone())?;
        if a.api != Api::Tgi && config.params.model_name.is_none() {
            match api::discover_model(probe.http(), &a.url, a.api_key.as_deref()).await {
                Ok(m) => config.params.model_name = Some(m),
                Err(e) => eprintln!("no --model-name and {e}; sending requests without `model`"),
            }
        }
        Client::new(config)?
    };
    let prompts = Prompts::new(load_prompts(&a, &client).await?)?;

    let (handle, cancel) = Cancel::new();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: writing what was measured so far");
            handle.cancel();
        }
    });

    let level = |load| LevelConfig {
        load,
        stop,
        warmup: a.warmup,
        pause: a.pause,
        slo: slo.clone(),
        seed: a.seed,
    };
    let mut plan: Vec<LevelConfig> = if a.sweep {
        vec![level(LoadModel::Closed {
            concurrency: a.sweep_concurrency,
        })]
    } else if !a.rate.is_empty() {
        a.rate
            .iter()
            .map(|&rate_s| {
                level(LoadModel::Open {
                    rate_s,
                    arrival: a.arrival,
                    max_in_flight: a.max_in_flight,
                })
            })
            .collect()
    } else if !a.concurrency.is_empty() {
        a.concurrency
            .iter()
            .map(|&c| level(LoadModel::Closed { concurrency: c }))
            .collect()
    } else {
        [1, 5, 10, 20]
            .iter()
            .map(|&c| level(LoadModel::Closed { concurrency: c }))
            .collect()
    };
    for l in &plan {
        l.validate()?;
    }

    let progress = Arc::new(ConsoleProgress::new());
    let mut results: Vec<LevelResult> = Vec::new();
    let mut i = 0;
    while i < plan.len() && !cancel.is_cancelled() {
        let r = run_level(&client, &prompts, &plan[i], progress.clone(), &cancel).await?;
        if a.sweep && i == 0 {
            let rates = sweep::sweep_rates(r.summary.request_rate_s, a.sweep_steps);
            if rates.is_empty() {
                eprintln!("sweep: no successful request at saturation; no rates to spread");
            }
            plan.extend(rates.into_iter().map(|rate_s| {
                level(LoadModel::Open {
                    rate_s,
                    arrival: a.arrival,
                    max_in_flight: a.max_in_flight,
                })
            }));
        }
        results.push(r);
        i += 1;
    }

    let summaries: Vec<_> = results.iter().map(|r| r.summary.clone()).collect();
    print!("{}", writers::table(&summaries));
    let interrupted = cancel.is_cancelled();
    if let Some(dir) = &a.out {
        writers::write_all(dir, &results, interrupted)?;
        eprintln!(
            "wrote {}/summary.json, summary.csv, requests.jsonl",
            dir.display()
        );
    }
    Ok(if interrupted {
        130
    } else if summaries.iter().any(|s| s.had_errors()) {
        1
    } else {
        0
    })
}

/// A client for `sagemaker://NAME?region=R`: the runtime's URL (or the
/// override), and credentials resolved now so that a missing one stops the
/// run before its first request.
async fn sagemaker_client(a: &Args, mut config: ClientConfig) -> anyhow::Result<Client> {
    let endpoint = EndpointRef::parse(&a.url)?;
    let settings = AwsSettings::load(endpoint.region.as_deref()).await?;
    let runtime = aws::endpoint_url(a.aws_endpoint_url.as_deref(), "SAGEMAKER_RUNTIME");
    config.base_url = endpoint.base_url(runtime.as_deref(), &settings.region)?;
    let signer = settings.signer(sagemaker::SIGNING_SERVICE);
    signer.credentials().await?;
    eprintln!(
        "SageMaker endpoint {} in {} at {}",
        endpoint.name, settings.region, config.base_url
    );
    Ok(Client::signed(config, signer)?)
}

async fn load_prompts(a: &Args, client: &Client) -> anyhow::Result<Vec<Prompt>> {
    if let Some(path) = &a.dataset {
        return Ok(workload::load_dataset(path, a.max_new_tokens)?);
    }
    let Some(spec) = &a.input_tokens else {
        if a.tokenizer.is_some() {
            bail!("--tokenizer only shapes --input-tokens prompts");
        }
        return Ok(vec![Prompt::new(a.prompt.clone(), a.max_new_tokens)]);
    };
    let spec = InputTokens::parse(spec)?;
    // Generous: even one token per 2 characters leaves room for every window.
    let corpus = workload::corpus(spec.max() as usize * 16 + 4096);
    let ends = match &a.tokenizer {
        Some(model) => gguf_token_ends(model, &corpus)?,
        None if a.api == Api::Sagemaker => {
            bail!("--input-tokens with --api sagemaker needs --tokenizer (the runtime has no /tokenize)")
        }
        None => api::tokenize_offsets(client.http(), &a.url, &corpus)
            .await
            .context("--input-tokens without --tokenizer asks the server's /tokenize")?,
    };
    Ok(workload::synthetic_prompts(
        &corpus,
        &ends,
        spec,
        SYNTHETIC_PROMPTS,
        a.max_new_tokens,
        a.seed,
    )?)
}

/// Byte offsets where each token of `text` ends, by a GGUF file's tokenizer.
fn gguf_token_ends(model: &str, text: &str) -> anyhow::Result<Vec<usize>> {
    let path = fetch::resolve_model(model)?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let tok = Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(text, false, false);
    let mut bytes = Vec::new();
    let mut ends = Vec::with_capacity(ids.len());
    for id in ids {
        tok.token_bytes(id, false, &mut bytes);
        ends.push(bytes.len());
    }
    // SentencePiece vocabularies prefix a space the text does not have.
    let shift = bytes.len().saturating_sub(text.len());
    Ok(ends.into_iter().map(|e| e.saturating_sub(shift)).collect())
}
