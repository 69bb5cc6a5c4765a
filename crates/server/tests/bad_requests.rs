//! A table of bad requests: each gets its documented status and error
//! body, and the server stays healthy and correct afterwards.

mod support;

use serde_json::{json, Value};
use support::{config_for, tiny_engine, TestServer};

/// What the server must answer: a status and, for TGI routes, the
/// `error_type`; for OpenAI routes, the error `type` and `param`.
enum Want {
    Tgi(u16, &'static str),
    OpenAi(u16, &'static str, Option<&'static str>),
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: String,
    want: Want,
    /// A part of the error message that must be there.
    message: Option<&'static str>,
}

impl Case {
    fn says(self, message: &'static str) -> Self {
        Self {
            message: Some(message),
            ..self
        }
    }
}

fn case(name: &'static str, path: &'static str, body: Value, want: Want) -> Case {
    Case {
        name,
        method: "POST",
        path,
        content_type: Some("application/json"),
        body: body.to_string(),
        want,
        message: None,
    }
}

fn raw(
    name: &'static str,
    path: &'static str,
    ct: Option<&'static str>,
    body: &str,
    want: Want,
) -> Case {
    Case {
        name,
        method: "POST",
        path,
        content_type: ct,
        body: body.to_string(),
        want,
        message: None,
    }
}

fn tgi(params: Value) -> Value {
    json!({"inputs": "Hello llama", "parameters": params})
}

fn cases() -> Vec<Case> {
    use Want::*;
    let v = "validation";
    let long_input = "llama ".repeat(1500);
    vec![
        case(
            "temperature 0",
            "/generate",
            tgi(json!({"temperature": 0.0})),
            Tgi(422, v),
        ),
        case(
            "negative temperature",
            "/generate",
            tgi(json!({"temperature": -1.0})),
            Tgi(422, v),
        ),
        case(
            "top_p 1.0",
            "/generate",
            tgi(json!({"top_p": 1.0})),
            Tgi(422, v),
        ),
        case(
            "top_p 0",
            "/generate",
            tgi(json!({"top_p": 0.0})),
            Tgi(422, v),
        ),
        case(
            "top_k 0",
            "/generate",
            tgi(json!({"top_k": 0})),
            Tgi(422, v),
        ),
        case(
            "negative top_k",
            "/generate",
            tgi(json!({"top_k": -5})),
            Tgi(422, v),
        ),
        case(
            "typical_p 1.5",
            "/generate",
            tgi(json!({"typical_p": 1.5})),
            Tgi(422, v),
        ),
        case(
            "repetition_penalty 0",
            "/generate",
            tgi(json!({"repetition_penalty": 0.0})),
            Tgi(422, v),
        ),
        case(
            "max_new_tokens 0",
            "/generate",
            tgi(json!({"max_new_tokens": 0})),
            Tgi(422, v),
        ),
        case(
            "five stop sequences",
            "/generate",
            tgi(json!({"stop": ["a", "b", "c", "d", "e"]})),
            Tgi(422, v),
        ),
        case(
            "empty stop sequence",
            "/generate",
            tgi(json!({"stop": [""]})),
            Tgi(422, v),
        ),
        case(
            "empty inputs",
            "/generate",
            json!({"inputs": ""}),
            Tgi(422, v),
        ),
        case(
            "truncate 0",
            "/generate",
            tgi(json!({"truncate": 0})),
            Tgi(422, v),
        ),
        case(
            "truncate past max input",
            "/generate",
            tgi(json!({"truncate": 100000})),
            Tgi(422, v),
        ),
        case(
            "input + new over max total",
            "/generate",
            tgi(json!({"max_new_tokens": 100000})),
            Tgi(422, v),
        ),
        case(
            "input over max input",
            "/generate",
            json!({"inputs": long_input}),
            Tgi(422, v),
        ),
        case(
            "best_of 2",
            "/generate",
            tgi(json!({"best_of": 2, "do_sample": true})),
            Tgi(422, v),
        ),
        case(
            "watermark",
            "/generate",
            tgi(json!({"watermark": true})),
            Tgi(422, v),
        ),
        case(
            "frequency_penalty 3",
            "/generate",
            tgi(json!({"frequency_penalty": 3.0})),
            Tgi(422, v),
        )
        .says("`frequency_penalty` must be between -2 and 2"),
        case(
            "grammar: bad JSON schema",
            "/generate",
            tgi(json!({"grammar": {"type": "json", "value": {"type": "objekt"}}})),
            Tgi(422, v),
        )
        .says("invalid `grammar`"),
        case(
            "grammar: schema not an object",
            "/generate",
            tgi(json!({"grammar": {"type": "json", "value": 5}})),
            Tgi(422, v),
        )
        .says("`grammar` value must be a JSON schema"),
        case(
            "grammar: bad regex",
            "/generate",
            tgi(json!({"grammar": {"type": "regex", "value": "(unclosed"}})),
            Tgi(422, v),
        )
        .says("invalid regex"),
        case(
            "grammar: unknown type",
            "/generate",
            tgi(json!({"grammar": {"type": "xml", "value": "<a/>"}})),
            Tgi(422, v),
        )
        .says("`grammar` must have `type` `json` or `regex`"),
        case(
            "top_n_tokens 6",
            "/generate",
            tgi(json!({"top_n_tokens": 6})),
            Tgi(422, v),
        )
        .says("`top_n_tokens` must be >= 0 and <= 5"),
        case(
            "stream: decoder_input_details",
            "/generate_stream",
            tgi(json!({"decoder_input_details": true, "details": true})),
            Tgi(422, v),
        )
        .says("`decoder_input_details` == true is not supported when streaming"),
        case(
            "max_new_tokens as text",
            "/generate",
            tgi(json!({"max_new_tokens": "ten"})),
            Tgi(422, v),
        ),
        case(
            "negative seed",
            "/generate",
            tgi(json!({"seed": -1})),
            Tgi(422, v),
        ),
        case(
            "inputs missing",
            "/generate",
            json!({"parameters": {}}),
            Tgi(422, v),
        ),
        case(
            "parameters not an object",
            "/generate",
            json!({"inputs": "x", "parameters": "fast"}),
            Tgi(422, v),
        ),
        raw(
            "malformed JSON",
            "/generate",
            Some("application/json"),
            "{\"inputs\": \"x\"",
            Tgi(400, "bad_request"),
        ),
        raw(
            "no content type",
            "/generate",
            None,
            "{\"inputs\": \"x\"}",
            Tgi(415, "bad_request"),
        ),
        raw(
            "text/plain",
            "/generate",
            Some("text/plain"),
            "{\"inputs\": \"x\"}",
            Tgi(415, "bad_request"),
        ),
        raw(
            "oversized body",
            "/generate",
            Some("application/json"),
            &format!("{{\"inputs\": \"{}\"}}", "x".repeat(20_000)),
            Tgi(413, "bad_request"),
        ),
        case(
            "stream: temperature 0",
            "/generate_stream",
            tgi(json!({"temperature": 0.0})),
            Tgi(422, v),
        ),
        case(
            "compat: top_k 0",
            "/",
            json!({"inputs": "x", "parameters": {"top_k": 0}, "stream": true}),
            Tgi(422, v),
        ),
        case(
            "tokenize: empty inputs",
            "/tokenize",
            json!({"inputs": ""}),
            Tgi(422, v),
        ),
        case(
            "unknown route",
            "/no/such/route",
            json!({}),
            Tgi(404, "not_found"),
        ),
        Case {
            method: "GET",
            ..case(
                "GET on a POST route",
                "/generate",
                json!({}),
                Tgi(405, "not_found"),
            )
        },
        case(
            "completions: temperature 3",
            "/v1/completions",
            json!({"prompt": "x", "temperature": 3.0}),
            OpenAi(400, "invalid_request_error", Some("temperature")),
        ),
        case(
            "completions: n 0",
            "/v1/completions",
            json!({"prompt": "x", "n": 0}),
            OpenAi(400, "invalid_request_error", Some("n")),
        )
        .says("`n` must be at least 1"),
        case(
            "completions: n past the concurrency limit",
            "/v1/completions",
            json!({"prompt": "x", "n": 500}),
            OpenAi(400, "invalid_request_error", Some("n")),
        )
        .says("exceed the batch limits"),
        case(
            "completions: n past the batch token budget",
            "/v1/completions",
            json!({"prompt": "x", "n": 100, "max_tokens": 200}),
            OpenAi(400, "invalid_request_error", Some("n")),
        )
        .says("exceed the batch limits"),
        case(
            "completions: best_of below n",
            "/v1/completions",
            json!({"prompt": "x", "n": 3, "best_of": 2}),
            OpenAi(400, "invalid_request_error", Some("best_of")),
        )
        .says("`best_of` must be >= `n`"),
        case(
            "completions: best_of streamed",
            "/v1/completions",
            json!({"prompt": "x", "best_of": 2, "stream": true}),
            OpenAi(400, "invalid_request_error", Some("best_of")),
        )
        .says("cannot be streamed"),
        case(
            "completions: logit_bias key not a token id",
            "/v1/completions",
            json!({"prompt": "x", "logit_bias": {"hello": 5}}),
            OpenAi(400, "invalid_request_error", Some("logit_bias")),
        )
        .says("`logit_bias` maps token ids to numbers"),
        case(
            "completions: logit_bias out of range",
            "/v1/completions",
            json!({"prompt": "x", "logit_bias": {"5": 200}}),
            OpenAi(400, "invalid_request_error", Some("logit_bias")),
        )
        .says("between -100 and 100"),
        case(
            "completions: logit_bias token outside the vocabulary",
            "/v1/completions",
            json!({"prompt": "x", "logit_bias": {"9999999": 1}}),
            OpenAi(400, "invalid_request_error", Some("logit_bias")),
        )
        .says("outside the vocabulary"),
        case(
            "completions: max_tokens 0",
            "/v1/completions",
            json!({"prompt": "x", "max_tokens": 0}),
            OpenAi(400, "invalid_request_error", Some("max_tokens")),
        ),
        case(
            "completions: two prompts",
            "/v1/completions",
            json!({"prompt": ["a", "b"]}),
            OpenAi(400, "invalid_request_error", Some("prompt")),
        ),
        case(
            "completions: token id out of vocabulary",
            "/v1/completions",
            json!({"prompt": [999999]}),
            OpenAi(400, "invalid_request_error", Some("prompt")),
        ),
        case(
            "completions: empty prompt",
            "/v1/completions",
            json!({"prompt": ""}),
            OpenAi(400, "invalid_request_error", Some("prompt")),
        ),
        case(
            "completions: logprobs 6",
            "/v1/completions",
            json!({"prompt": "x", "logprobs": 6}),
            OpenAi(400, "invalid_request_error", Some("logprobs")),
        )
        .says("`logprobs` must be between 0 and 5"),
        case(
            "completions: top_p 0",
            "/v1/completions",
            json!({"prompt": "x", "top_p": 0.0}),
            OpenAi(400, "invalid_request_error", Some("top_p")),
        ),
        case(
            "completions: max_tokens over the limit",
            "/v1/completions",
            json!({"prompt": "x", "max_tokens": 100000}),
            OpenAi(400, "invalid_request_error", Some("max_tokens")),
        ),
        case(
            "completions: prompt missing",
            "/v1/completions",
            json!({"max_tokens": 3}),
            OpenAi(400, "invalid_request_error", None),
        ),
        raw(
            "completions: form body",
            "/v1/completions",
            Some("application/x-www-form-urlencoded"),
            "prompt=x",
            OpenAi(415, "invalid_request_error", None),
        ),
        case(
            "chat: no messages",
            "/v1/chat/completions",
            json!({"messages": []}),
            OpenAi(400, "invalid_request_error", Some("messages")),
        ),
        case(
            "chat: tool of another type",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "retrieval", "function": {"name": "f"}}]}),
            OpenAi(400, "invalid_request_error", Some("tools")),
        )
        .says("`type` `function`"),
        case(
            "chat: tool_choice names an unknown function",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "function", "function": {"name": "get_time"}}],
                   "tool_choice": {"type": "function", "function": {"name": "launch"}}}),
            OpenAi(400, "invalid_request_error", Some("tool_choice")),
        )
        .says("`tool_choice` names function `launch`, which is not in `tools`"),
        case(
            "chat: tool_choice unknown word",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "function", "function": {"name": "get_time"}}],
                   "tool_choice": "sometimes"}),
            OpenAi(400, "invalid_request_error", Some("tool_choice")),
        )
        .says("`tool_choice` must be `none`, `auto`, `required`"),
        case(
            "chat: tool_choice required without tools",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
            OpenAi(400, "invalid_request_error", Some("tool_choice")),
        )
        .says("needs `tools`"),
        case(
            "chat: tool parameters with a bad schema",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}],
                   "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}],
                   "tool_choice": "required"}),
            OpenAi(400, "invalid_request_error", Some("tools")),
        )
        .says("invalid `tools`"),
        case(
            "chat: top_logprobs 21",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}),
            OpenAi(400, "invalid_request_error", Some("top_logprobs")),
        )
        .says("`top_logprobs` must be between 0 and 20"),
        case(
            "chat: top_logprobs without logprobs",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}),
            OpenAi(400, "invalid_request_error", Some("top_logprobs")),
        )
        .says("needs `logprobs`"),
        case(
            "chat: response_format with a bad schema",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}],
                   "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}}),
            OpenAi(400, "invalid_request_error", Some("response_format")),
        )
        .says("invalid `response_format`"),
        case(
            "chat: response_format of an unknown type",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}),
            OpenAi(400, "invalid_request_error", Some("response_format")),
        )
        .says("`response_format` must have `type`"),
        case(
            "chat: n 0",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "n": 0}),
            OpenAi(400, "invalid_request_error", Some("n")),
        )
        .says("`n` must be at least 1"),
        case(
            "chat: content is a number",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": 5}]}),
            OpenAi(400, "invalid_request_error", None),
        ),
        case(
            "chat: presence_penalty 3",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "presence_penalty": 3.0, "stream": true}),
            OpenAi(400, "invalid_request_error", Some("presence_penalty")),
        )
        .says("`presence_penalty` must be between -2 and 2"),
        case(
            "chat: image part",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            OpenAi(400, "invalid_request_error", Some("messages")),
        ),
        raw(
            "chat: malformed JSON",
            "/v1/chat/completions",
            Some("application/json"),
            "{\"messages\": [",
            OpenAi(400, "invalid_request_error", None),
        ),
        case(
            "openai: unknown route",
            "/v1/embeddings",
            json!({}),
            OpenAi(404, "not_found_error", None),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_status_and_error_body() {
    let engine = tiny_engine();
    let mut config = config_for(&engine);
    config.payload_limit = 10_000;
    let server = TestServer::start(engine, config);
    let client = reqwest::Client::new();
    let table = cases();
    assert!(table.len() >= 30);
    let mut failures = Vec::new();
    for c in &table {
        let mut req = client
            .request(c.method.parse().unwrap(), server.at(c.path))
            .body(c.body.clone());
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = match resp.json().await {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{}: body is not JSON ({e})", c.name));
                continue;
            }
        };
        let ok = match &c.want {
            Want::Tgi(code, kind) => {
                status == *code
                    && body["error_type"] == *kind
                    && body["error"].as_str().is_some_and(|m| !m.is_empty())
            }
            Want::OpenAi(code, kind, param) => {
                let e = &body["error"];
                status == *code
                    && e["type"] == *kind
                    && e["message"].as_str().is_some_and(|m| !m.is_empty())
                    && param.is_none_or(|p| e["param"] == p)
            }
        };
        let text = match &c.want {
            Want::Tgi(..) => body["error"].as_str(),
            Want::OpenAi(..) => body["error"]["message"].as_str(),
        };
        let said = c
            .message
            .is_none_or(|m| text.is_some_and(|t| t.contains(m)));
        if !ok || !said {
            failures.push(format!("{}: got {status} {body}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );

    // Still healthy, and still right.
    let health = client.get(server.at("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ok: Value = client
        .post(server.at("/generate"))
        .json(&tgi(
            json!({"max_new_tokens": 5, "ignore_eos": true, "details": true}),
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["details"]["generated_tokens"], 5, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_guards_inference_routes_only() {
    let engine = tiny_engine();
    let mut config = config_for(&engine);
    config.api_key = Some("s3cret".into());
    let server = TestServer::start(engine, config);
    let client = reqwest::Client::new();
    let body = tgi(json!({"max_new_tokens": 2}));
    for key in [None, Some("wrong"), Some("s3cret-but-longer")] {
        let mut req = client.post(server.at("/generate")).json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "key {key:?}");
        let b: Value = resp.json().await.unwrap();
        assert_eq!(b["error_type"], "unauthorized");
    }
    let resp = client
        .post(server.at("/v1/completions"))
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["type"], "authentication_error");
    let ok = client
        .post(server.at("/generate"))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    for open in ["/health", "/info", "/metrics", "/api-doc/openapi.json"] {
        assert_eq!(
            client.get(server.at(open)).send().await.unwrap().status(),
            200,
            "{open}"
        );
    }
}
