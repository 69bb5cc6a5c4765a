//! `servebench serve`: the HTTP server, with TGI's launcher flags.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use servebench_engine::fetch;
use servebench_engine::kv_cache::KvShape;
use servebench_engine::synthetic::parse_quant;
use servebench_engine::LoadOptions;
use servebench_server::{kv_budget, ServerConfig};

use super::ModelArgs;

/// Every flag can also come from the environment under TGI's launcher
/// names, so the same image runs as the Hugging Face LLM container does.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on (the container listens on 0.0.0.0).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Store the layers' weights as this type at load time
    /// (q4_0, q4_1, q8_0, f16, f32), so one file gives several deployments.
    #[arg(long, env = "QUANTIZE")]
    quantize: Option<String>,
    /// Name reported by /info and /v1/models (default: the file name).
    #[arg(long, env = "SERVED_MODEL_NAME")]
    model_id: Option<String>,
    /// Requests in flight before new ones get 429.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 128)]
    max_concurrent_requests: usize,
    /// Longest prompt in tokens (default: max-total-tokens - 1).
    #[arg(long, env = "MAX_INPUT_TOKENS")]
    max_input_tokens: Option<usize>,
    /// TGI's former name of --max-input-tokens.
    #[arg(
        long,
        env = "MAX_INPUT_LENGTH",
        hide = true,
        conflicts_with = "max_input_tokens"
    )]
    max_input_length: Option<usize>,
    /// Longest prompt + generation (default: min(context, 2048)).
    #[arg(long, env = "MAX_TOTAL_TOKENS")]
    max_total_tokens: Option<usize>,
    /// Prompt tokens that may join the batch in one step (default: max-input-tokens + 50).
    #[arg(long, env = "MAX_BATCH_PREFILL_TOKENS")]
    max_batch_prefill_tokens: Option<usize>,
    /// KV cache budget: tokens (prompt + max new) all running sequences may
    /// reach together; the KV memory never exceeds it (default: derived
    /// from the memory available after loading the weights, see
    /// --kv-memory-fraction).
    #[arg(long, env = "MAX_BATCH_TOTAL_TOKENS")]
    max_batch_total_tokens: Option<usize>,
    /// Share of the memory available after loading the weights that the
    /// derived --max-batch-total-tokens fills with KV cache.
    #[arg(long, env = "KV_MEMORY_FRACTION", default_value_t = kv_budget::DEFAULT_MEMORY_FRACTION)]
    kv_memory_fraction: f64,
    /// Sequences in the running batch (default: only the token budgets limit it).
    #[arg(long, env = "MAX_BATCH_SIZE")]
    max_batch_size: Option<usize>,
    /// TGI's minimum join size. Accepted for compatibility and reported in
    /// /info; as in TGI v3 with chunked prefill it has no effect: a joining
    /// prompt is prefilled within the running batch's decode step.
    #[arg(long, env = "WAITING_SERVED_RATIO", default_value_t = 0.3)]
    waiting_served_ratio: f32,
    /// As --waiting-served-ratio: accepted, reported, no effect.
    #[arg(long, env = "MAX_WAITING_TOKENS", default_value_t = 20)]
    max_waiting_tokens: usize,
    /// Stop sequences a request may give.
    #[arg(long, env = "MAX_STOP_SEQUENCES", default_value_t = 4)]
    max_stop_sequences: usize,
    /// Largest `best_of` a request may ask for.
    #[arg(long, env = "MAX_BEST_OF", default_value_t = 1)]
    max_best_of: usize,
    /// Require `Authorization: Bearer KEY` on inference routes.
    #[arg(long, env = "SERVEBENCH_API_KEY")]
    api_key: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "PAYLOAD_LIMIT", default_value_t = 2_000_000)]
    payload_limit: usize,
    /// Seconds a SIGTERM waits for in-flight requests.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value_t = 60)]
    shutdown_timeout: u64,
    /// MiB of finished sequences' key/value caches kept so that prompts
    /// starting the same way skip that part of their prefill (0 = off).
    #[arg(long, env = "PREFIX_CACHE_MIB", default_value_t = 64)]
    prefix_cache_mib: usize,
    /// SageMaker starts a container as `docker run IMAGE serve`; with
    /// `servebench serve` as the image's entry point that word arrives here.
    #[arg(hide = true, value_parser = ["serve"])]
    sagemaker_command: Option<String>,
}

/// Where SageMaker unpacks a model artifact; served when `--model` is absent.
const SAGEMAKER_MODEL_DIR: &str = "/opt/ml/model";

/// `--model`, or SageMaker's model folder when it holds a GGUF file.
fn model_spec(given: Option<String>, sagemaker_dir: &Path) -> Option<String> {
    given.or_else(|| fetch::gguf_in_dir(sagemaker_dir).map(|p| p.to_string_lossy().into_owned()))
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    a.model.model = model_spec(a.model.model.take(), Path::new(SAGEMAKER_MODEL_DIR));
    let options = LoadOptions {
        quantize: a.quantize.as_deref().map(parse_quant).transpose()?,
    };
    let (path, engine) = a.model.load_with(&options)?;
    let context = engine.model.config().context_length;
    let name = path
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let mut c = ServerConfig::for_model(a.model_id.as_deref().unwrap_or(&name), context);
    if let Some(t) = a.max_total_tokens {
        c.set_max_total_tokens(t);
    }
    if let Some(t) = a.max_input_tokens.or(a.max_input_length) {
        c.max_input_tokens = t;
        c.max_batch_prefill_tokens = c.max_batch_prefill_tokens.max(t + 50);
    }
    c.max_batch_prefill_tokens = a
        .max_batch_prefill_tokens
        .unwrap_or(c.max_batch_prefill_tokens);
    c.max_concurrent_requests = a.max_concurrent_requests;
    c.max_batch_size = a.max_batch_size;
    c.waiting_served_ratio = a.waiting_served_ratio;
    c.max_waiting_tokens = a.max_waiting_tokens;
    c.max_stop_sequences = a.max_stop_sequences;
    c.max_best_of = a.max_best_of;
    c.api_key = a.api_key;
    c.payload_limit = a.payload_limit;
    c.shutdown_timeout = Duration::from_secs(a.shutdown_timeout);
    c.prefix_cache_bytes = a.prefix_cache_mib << 20;
    eprintln!(
        "servebench: {} ({:?} weights), {}",
        path.display(),
        engine.model.weight_type(),
        engine.tokenizer.describe()
    );
    c.max_batch_total_tokens = kv_budget(
        a.max_batch_total_tokens,
        a.kv_memory_fraction,
        &c,
        engine.model.kv_shape(),
    )?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(servebench_server::serve(
            Arc::new(engine),
            c,
            SocketAddr::new(a.host, a.port),
        ))
}

/// `--max-batch-total-tokens`, or the budget the memory left after loading
/// the weights allows; logged with the memory it stands for.
fn kv_budget(
    given: Option<usize>,
    fraction: f64,
    c: &ServerConfig,
    shape: KvShape,
) -> anyhow::Result<usize> {
    let per_token = shape.bytes_per_token();
    let gib = |tokens: usize| (tokens * per_token) as f64 / (1u64 << 30) as f64;
    if let Some(t) = given {
        eprintln!(
            "servebench: KV budget {t} tokens (--max-batch-total-tokens), {:.2} GiB at {per_token} bytes a token",
            gib(t)
        );
        return Ok(t);
    }
    if !(fraction > 0.0 && fraction <= 1.0) {
        anyhow::bail!("--kv-memory-fraction must be in (0, 1]");
    }
    // At least one request (a zero limit is reported by the config check).
    let cap = c
        .max_concurrent_requests
        .max(1)
        .saturating_mul(c.max_total_tokens);
    let Some(available) = kv_budget::available_memory() else {
        let t = cap.min(32 * c.max_total_tokens);
        eprintln!(
            "servebench: KV budget {t} tokens ({:.2} GiB; available memory unknown here, give --max-batch-total-tokens)",
            gib(t)
        );
        return Ok(t);
    };
    let b = kv_budget::derive(available, fraction, shape, cap);
    if b.tokens < c.max_total_tokens {
        anyhow::bail!(
            "{:.2} GiB of memory is available after loading the weights: {} x that holds the KV cache of {} tokens at {per_token} bytes a token, fewer than one request's --max-total-tokens {}; lower --max-total-tokens, or give --max-batch-total-tokens",
            available as f64 / (1u64 << 30) as f64,
            fraction,
            b.tokens,
            c.max_total_tokens
        );
    }
    eprintln!(
        "servebench: KV budget {} tokens = {:.2} GiB at {per_token} bytes a token ({}; {:.2} GiB available after loading the weights)",
        b.tokens,
        gib(b.tokens),
        if b.capped {
            format!(
                "capped at --max-concurrent-requests {} x --max-total-tokens {}",
                c.max_concurrent_requests, c.max_total_tokens
            )
        } else {
            format!("--kv-memory-fraction {} of it", fraction)
        },
        available as f64 / (1u64 << 30) as f64
    );
    Ok(b.tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sagemakers_model_folder_is_served_only_without_model() {
        let dir = std::env::temp_dir().join(format!("servebench-opt-ml-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(model_spec(None, &dir), None, "empty folder: the default");
        std::fs::write(dir.join("m.gguf"), "x").unwrap();
        let found = dir.join("m.gguf").to_string_lossy().into_owned();
        assert_eq!(model_spec(None, &dir), Some(found));
        assert_eq!(
            model_spec(Some("x.gguf".into()), &dir).as_deref(),
            Some("x.gguf")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
