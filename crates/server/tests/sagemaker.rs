//! The SageMaker container contract: `/invocations` answers each of the three
//! body shapes exactly as the route that owns the shape does (stream and
//! not, errors included), and `/ping` is SageMaker's health check.

mod support;

use serde_json::{json, Value};
use support::{config_for, tiny_engine, TestServer};

/// What a response is, as bytes: status, content type and body. OpenAI's
/// `id` and `created` differ between any two requests (a counter and the
/// clock), so they are masked; every other byte must match.
async fn answer(
    client: &reqwest::Client,
    url: String,
    content_type: &str,
    body: &str,
) -> (u16, String, String) {
    let resp = client
        .post(url)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    (status, ct, mask(&text))
}

/// Replaces the value after each `"id":"` and `"created":` with `_`.
fn mask(text: &str) -> String {
    let mut out = text.to_string();
    for (key, end) in [("\"id\":\"", '"'), ("\"created\":", ',')] {
        let mut from = 0;
        while let Some(at) = out[from..].find(key) {
            let start = from + at + key.len();
            let Some(len) = out[start..].find(end) else {
                break;
            };
            out.replace_range(start..start + len, "_");
            from = start + 1;
        }
    }
    out
}

#[test]
fn masking_keeps_everything_but_ids_and_times() {
    assert_eq!(
        mask(r#"{"id":"cmpl-1-2","object":"x","created":17,"model":"m","token":{"id":5}}"#),
        r#"{"id":"_","object":"x","created":_,"model":"m","token":{"id":5}}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_answer_as_the_matching_route_byte_for_byte() {
    let engine = tiny_engine();
    let server = TestServer::start(engine, config_for(&tiny_engine()));
    let client = reqwest::Client::new();
    let json = "application/json";
    let tgi_params = json!({"max_new_tokens": 12, "details": true, "decoder_input_details": true});
    let chat = json!({"messages": [{"role": "user", "content": "Hello llama, héllo"}], "max_tokens": 9, "temperature": 0});
    let completion =
        json!({"prompt": "Once upon a time", "max_tokens": 9, "echo": true, "temperature": 0});
    let mut cases: Vec<(&str, &str, Value)> = Vec::new();
    for stream in [false, true] {
        // As TGI, prompt logprobs are for whole answers only: a stream with
        // decoder_input_details is a 422.
        let mut params = tgi_params.clone();
        if stream {
            params["decoder_input_details"] = false.into();
        }
        cases.push((
            "tgi",
            "/",
            json!({"inputs": "Once upon a time", "parameters": params, "stream": stream}),
        ));
        let mut c = chat.clone();
        c["stream"] = stream.into();
        cases.push(("chat", "/v1/chat/completions", c));
        let mut p = completion.clone();
        p["stream"] = stream.into();
        if stream {
            p["stream_options"] = json!({"include_usage": true});
        }
        cases.push(("completion", "/v1/completions", p));
    }
    for (name, route, body) in &cases {
        let body = body.to_string();
        let direct = answer(&client, server.at(route), json, &body).await;
        let via = answer(&client, server.at("/invocations"), json, &body).await;
        assert_eq!(direct.0, 200, "{name}: {}", direct.2);
        assert!(direct.2.len() > 40, "{name}: {}", direct.2);
        assert_eq!(via, direct, "{name} {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_invocations_get_the_matching_routes_errors() {
    let engine = tiny_engine();
    let mut config = config_for(&engine);
    config.payload_limit = 10_000;
    let server = TestServer::start(engine, config);
    let client = reqwest::Client::new();
    let json = "application/json";
    let big = json!({"inputs": "x".repeat(20_000)}).to_string();
    let cases: Vec<(&str, &str, &str, String)> = vec![
        ("tgi: top_p 1", "/", json, json!({"inputs": "x", "parameters": {"top_p": 1.0}}).to_string()),
        ("tgi: no inputs", "/", json, json!({"parameters": {}}).to_string()),
        ("tgi: inputs a number", "/", json, json!({"inputs": 5}).to_string()),
        ("empty object", "/", json, "{}".into()),
        ("not an object", "/", json, "[1, 2]".into()),
        ("malformed JSON", "/", json, "{\"inputs\": ".into()),
        ("form body", "/", "application/x-www-form-urlencoded", "inputs=x".into()),
        ("too large", "/", json, big),
        ("chat: no messages", "/v1/chat/completions", json, json!({"messages": []}).to_string()),
        (
            "chat: tools",
            "/v1/chat/completions",
            json,
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})
                .to_string(),
        ),
        (
            "completion: two prompts",
            "/v1/completions",
            json,
            json!({"prompt": ["a", "b"]}).to_string(),
        ),
        (
            "completion: max_tokens too large",
            "/v1/completions",
            json,
            json!({"prompt": "a", "max_tokens": 100_000}).to_string(),
        ),
    ];
    for (name, route, ct, body) in &cases {
        let direct = answer(&client, server.at(route), ct, body).await;
        let via = answer(&client, server.at("/invocations"), ct, body).await;
        assert!(
            matches!(direct.0, 400 | 413 | 415 | 422),
            "{name}: {direct:?}"
        );
        assert_eq!(via, direct, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_open_and_invocations_sit_behind_the_key() {
    let engine = tiny_engine();
    let mut config = config_for(&engine);
    config.api_key = Some("s3cret".into());
    let server = TestServer::start(engine, config);
    let client = reqwest::Client::new();
    let ping = client.get(server.at("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), 200);
    let body = json!({"inputs": "x", "parameters": {"max_new_tokens": 2}});
    let denied = client
        .post(server.at("/invocations"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let ok = client
        .post(server.at("/invocations"))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let v: Value = ok.json().await.unwrap();
    assert!(v[0]["generated_text"].is_string(), "{v}");
}
