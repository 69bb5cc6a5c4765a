//! The KV budget (`max_batch_total_tokens`): the running batch's reserved
//! tokens never exceed it, requests beyond it wait in the queue and then
//! complete (streamed or not), a request that could never fit is refused
//! at validation with the limit in the message, and `/info` reports it.

mod support;

use futures_util::future::join_all;
use serde_json::{json, Value};
use support::{config_for, get_text, metric, post_json, tiny_engine, TestServer};

/// Room for three sequences of 16 prompt tokens (or fewer) and 60 new
/// ones: each reserves 5 pages of 16 positions, 80 tokens, of 256.
const BUDGET: usize = 256;
const NEW: usize = 60;

fn config() -> servebench_server::ServerConfig {
    let mut c = config_for(&tiny_engine());
    c.set_max_total_tokens(128);
    c.max_batch_total_tokens = BUDGET;
    c
}

async fn one(client: &reqwest::Client, base: &str, i: usize) -> usize {
    // Prompts share a start, so finished sequences' kept prefixes are
    // reused and evicted as admissions need their pages.
    let inputs = format!("Request {i} about llamas");
    let parameters = json!({"max_new_tokens": NEW, "ignore_eos": true, "details": true});
    if i.is_multiple_of(2) {
        let body = json!({"inputs": inputs, "parameters": parameters});
        let resp = post_json(client, &format!("{base}/generate"), &body).await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        v["details"]["generated_tokens"].as_u64().unwrap() as usize
    } else {
        let body = json!({"inputs": inputs, "parameters": parameters, "stream": true});
        let resp = post_json(client, &format!("{base}/generate_stream"), &body).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| serde_json::from_str(d.trim()).unwrap())
            .collect();
        let last = events.last().expect("a streamed event");
        assert_eq!(events.len(), NEW, "one event per token");
        last["details"]["generated_tokens"].as_u64().unwrap() as usize
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_four_requests_share_a_budget_of_three_and_all_complete() {
    let server = TestServer::start(tiny_engine(), config());
    let client = reqwest::Client::new();
    let generated = join_all((0..24).map(|i| one(&client, &server.url, i))).await;
    assert!(generated.iter().all(|&g| g == NEW), "{generated:?}");
    let m = get_text(&client, &server.at("/metrics")).await;
    let peak = metric(&m, "servebench_kv_reserved_tokens_peak");
    assert_eq!(metric(&m, "servebench_kv_budget_tokens"), BUDGET as f64);
    assert!(
        peak <= BUDGET as f64,
        "reserved {peak} tokens, budget {BUDGET}"
    );
    assert!(peak >= 3.0 * 80.0, "the budget was never full: peak {peak}");
    assert!(metric(&m, "tgi_request_queue_duration_count") >= 24.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_beyond_the_limits_is_refused_and_info_shows_the_budget() {
    let server = TestServer::start(tiny_engine(), config());
    let client = reqwest::Client::new();
    let info: Value = serde_json::from_str(&get_text(&client, &server.at("/info")).await).unwrap();
    assert_eq!(info["max_batch_total_tokens"], BUDGET, "{info}");
    assert_eq!(info["max_total_tokens"], 128, "{info}");
    let body = json!({"inputs": "Llamas", "parameters": {"max_new_tokens": 200}});
    let resp = post_json(&client, &server.at("/generate"), &body).await;
    assert_eq!(resp.status(), 422);
    let err: Value = resp.json().await.unwrap();
    let message = err["error"].as_str().unwrap();
    assert!(
        message.contains("max_new_tokens") && message.contains("128"),
        "{message}"
    );
    // Four choices of 100 tokens need 400 of the 256.
    let body = json!({"model": "m", "prompt": "Llamas", "max_tokens": 90, "n": 4});
    let resp = post_json(&client, &server.at("/v1/completions"), &body).await;
    let status = resp.status().as_u16();
    let err: Value = resp.json().await.unwrap();
    assert!((400..500).contains(&status), "{status} {err}");
    assert!(err.to_string().contains("256"), "{err}");
}
