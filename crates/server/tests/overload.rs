//! More simultaneous requests than `--max-concurrent-requests`: the excess
//! gets 429, every accepted request completes, nothing answers 5xx.

mod support;

use serde_json::{json, Value};
use support::{config_for, tiny_engine, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_against_sixteen_slots() {
    let engine = tiny_engine();
    let mut config = config_for(&engine);
    config.max_concurrent_requests = 16;
    let server = TestServer::start(engine, config);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let body = json!({"inputs": "Llamas", "parameters": {"max_new_tokens": 200, "ignore_eos": true, "details": true}});
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (client, url, body) = (client.clone(), server.at("/generate"), body.clone());
            tokio::spawn(async move {
                let resp = client.post(url).json(&body).send().await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let (mut ok, mut overloaded) = (0, 0);
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => {
                assert_eq!(body["details"]["generated_tokens"], 200, "{body}");
                ok += 1;
            }
            429 => {
                assert_eq!(body["error_type"], "overloaded", "{body}");
                overloaded += 1;
            }
            other => panic!("status {other}: {body}"),
        }
    }
    assert_eq!(ok + overloaded, 200);
    assert!(ok >= 16, "only {ok} accepted");
    assert!(overloaded > 0, "nothing was refused");
    eprintln!("{ok} completed, {overloaded} refused with 429");
}
