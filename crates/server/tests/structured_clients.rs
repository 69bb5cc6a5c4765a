//! Structured output, tool calling, logprobs and `n` through the PyPI
//! clients (openai's `parse` with a Pydantic model, text-generation's
//! `grammar` and `top_n_tokens`) against a real server on the real model;
//! jsonschema checks every JSON answer (see support/structured.py).

mod support;

use std::process::Command;

use serde_json::Value;
use support::{config_for, real_engine, skip, TestServer};

#[test]
fn pypi_clients_get_valid_structured_answers() {
    let Some(engine) = real_engine() else { return };
    let server = TestServer::start(engine.clone(), config_for(&engine));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/structured.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&server.url)
        .output()
        .expect("python3 runs");
    if out.status.code() == Some(3) {
        return skip(
            "python packages openai, text-generation, pydantic, jsonschema are not installed",
        );
    }
    assert!(
        out.status.success(),
        "structured.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failures = r["failures"].as_array().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures:\n{:#}",
        failures.len(),
        r["failures"]
    );
    assert_eq!(r["schema_requests_valid"], 200, "{r}");
    assert!(r["parsed"].is_object(), "{r}");
    assert_eq!(r["tool_calls"], 4, "{r}");
    assert_eq!(r["n_choices"], serde_json::json!([0, 1, 2]));
    assert_eq!(r["n_stream_indexes"], serde_json::json!([0, 1, 2]));
    assert!(r["chat_logprob_tokens"].as_u64().unwrap() > 0);
}
