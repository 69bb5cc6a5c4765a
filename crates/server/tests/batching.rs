//! Continuous batching must not change results: greedy outputs of requests
//! that run together equal those of the same requests one at a time, and
//! equal the engine's own generation.

mod support;

use futures_util::future::join_all;
use serde_json::{json, Value};
use servebench_engine::{generate, GenerateParams};
use support::{config_for, tiny_engine, TestServer};

const PROMPTS: [&str; 8] = [
    "Once",
    "The quick brown fox",
    "def add(a, b): return a + b",
    "Llamas live in the Andes and eat grass all day long.",
    "1 2 3 4 5 6 7 8 9",
    "Hello, world!",
    "A",
    "The study measured latency and throughput of many servers at several loads.",
];

async fn texts(
    client: &reqwest::Client,
    url: &str,
    prompts: &[&str],
    together: bool,
) -> Vec<String> {
    let one = |p: &str| {
        let body = json!({"inputs": p, "parameters": {"max_new_tokens": 24, "ignore_eos": true}});
        let req = client.post(url).json(&body);
        async move {
            let v: Value = req.send().await.unwrap().json().await.unwrap();
            v["generated_text"].as_str().unwrap().to_string()
        }
    };
    if together {
        join_all(prompts.iter().map(|p| one(p))).await
    } else {
        let mut out = Vec::new();
        for p in prompts {
            out.push(one(p).await);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_greedy_outputs_equal_sequential_and_engine_outputs() {
    let engine = tiny_engine();
    let server = TestServer::start(engine.clone(), config_for(&engine));
    let client = reqwest::Client::new();
    let url = server.at("/generate");
    let alone = texts(&client, &url, &PROMPTS, false).await;
    let together = texts(&client, &url, &PROMPTS, true).await;
    assert_eq!(alone, together);
    for (p, got) in PROMPTS.iter().zip(&alone) {
        let ids = engine.encode_prompt(p, false).unwrap();
        let params = GenerateParams {
            max_new_tokens: 24,
            ignore_eos: true,
            ..Default::default()
        };
        let want = generate(&engine.model, &engine.tokenizer, ids, params, |_, _| {}).unwrap();
        assert_eq!(got, &want.text, "prompt {p:?}");
    }
}
