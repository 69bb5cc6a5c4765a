//! Prometheus metrics under TGI's names, so dashboards built for TGI work
//! unchanged. One recorder per process; every server in it shares it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use servebench_engine::kv_cache::PoolUsage;

use crate::infer::{Ended, ValidRequest};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once) and returns its handle; `None`
/// when another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
                60.0,
            ];
            let tokens = [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets(&seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Suffix("_tokens".into()),
                        &tokens,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Suffix("_length".into()),
                        &tokens,
                    )
                })
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// The text `/metrics` serves.
pub fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}

/// A request reached an inference route.
pub fn request() {
    counter!("tgi_request_count").increment(1);
}

/// A request failed; `err` is TGI's label (`validation`, `overloaded`,
/// `generation`, `dropped`, ...).
pub fn failure(err: &'static str) {
    counter!("tgi_request_failure", "err" => err).increment(1);
}

/// `n` requests whose client went away before the end.
pub fn dropped(n: usize) {
    counter!("tgi_request_failure", "err" => "dropped").increment(n as u64);
}

/// A request finished.
pub fn success(request: &ValidRequest, end: &Ended) {
    counter!("tgi_request_success").increment(1);
    let total = request.validation + end.queue + end.inference;
    histogram!("tgi_request_duration").record(total.as_secs_f64());
    histogram!("tgi_request_validation_duration").record(request.validation.as_secs_f64());
    histogram!("tgi_request_queue_duration").record(end.queue.as_secs_f64());
    histogram!("tgi_request_inference_duration").record(end.inference.as_secs_f64());
    histogram!("tgi_request_mean_time_per_token_duration")
        .record(end.time_per_token().as_secs_f64());
    histogram!("tgi_request_generated_tokens").record(end.generated_tokens as f64);
    histogram!("tgi_request_input_length").record(end.prompt_tokens as f64);
}

/// Queue and batch sizes after admission.
pub fn batch_state(queued: usize, running: usize) {
    gauge!("tgi_queue_size").set(queued as f64);
    gauge!("tgi_batch_current_size").set(running as f64);
}

/// One forward pass; `prefill` when requests joined in it.
pub fn forward(prefill: bool, took: Duration) {
    let method = if prefill { "prefill" } else { "decode" };
    histogram!("tgi_batch_forward_duration", "method" => method).record(took.as_secs_f64());
}

/// The KV pool after admission and after each step, in tokens (positions
/// of 16-position pages): the budget, what is reserved (by running
/// sequences and kept prefixes; admission keeps it within the budget), its
/// peak, what the pages in use hold, and the bytes allocated. `batch` is
/// what the running batch may grow to (TGI's gauge).
pub fn kv_cache(pool: &PoolUsage, batch: usize) {
    gauge!("tgi_batch_current_max_tokens").set(batch as f64);
    gauge!("servebench_kv_budget_tokens").set(pool.capacity_tokens as f64);
    gauge!("servebench_kv_reserved_tokens").set(pool.reserved_tokens as f64);
    gauge!("servebench_kv_reserved_tokens_peak").set(pool.peak_reserved_tokens as f64);
    gauge!("servebench_kv_used_tokens").set(pool.used_tokens as f64);
    gauge!("servebench_kv_allocated_bytes").set(pool.allocated_bytes as f64);
}
