//! Clients that leave mid-stream: their sequences leave the batch at the
//! next step and are counted as dropped. (Own test binary: the metrics
//! recorder is per process.)

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use support::{config_for, metric, tiny_engine, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_that_disconnect_leave_the_batch_within_a_second() {
    let engine = tiny_engine();
    let server = TestServer::start(engine.clone(), config_for(&engine));
    let client = reqwest::Client::new();
    let metrics = || async {
        client
            .get(server.at("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let dropped_before = metric(&metrics().await, "tgi_request_failure{err=\"dropped\"}");
    let long = json!({"inputs": "A long story", "parameters": {"max_new_tokens": 300, "ignore_eos": true}});
    let mut streams = Vec::new();
    for _ in 0..50 {
        let resp = client
            .post(server.at("/generate_stream"))
            .json(&long)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        streams.push(resp.bytes_stream());
    }
    // Every stream has produced a token: all 50 are in the batch.
    for s in &mut streams {
        let first = s.next().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("\"token\""));
    }
    let running = metric(&metrics().await, "tgi_batch_current_size");
    assert_eq!(running, 50.0, "batch size while 50 streams run");
    drop(streams);
    let left = Instant::now();
    loop {
        let m = metrics().await;
        let size = metric(&m, "tgi_batch_current_size");
        let dropped = metric(&m, "tgi_request_failure{err=\"dropped\"}") - dropped_before;
        if size == 0.0 && dropped >= 50.0 {
            assert_eq!(dropped, 50.0);
            break;
        }
        assert!(
            left.elapsed() < Duration::from_secs(1),
            "1 s after the clients left: batch size {size}, dropped {dropped}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server carries on.
    let ok = client
        .post(server.at("/generate"))
        .json(&json!({"inputs": "x", "parameters": {"max_new_tokens": 3}}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}
