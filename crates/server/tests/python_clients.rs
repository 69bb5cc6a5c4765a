//! The ecosystem's own clients from PyPI (text-generation, huggingface_hub,
//! openai) against a real server on the real model: every client, streaming
//! or not, gets exactly the engine's greedy output.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use servebench_engine::{generate, Engine, GenerateParams};
use support::{config_for, real_engine, skip, TestServer};

const PROMPTS: [&str; 4] = [
    "Write a 500 word long story about llamas",
    "The capital of France is",
    "def fibonacci(n):",
    "List three colors:",
];
const MAX_NEW: usize = 16;

/// The engine's greedy text for `prompt`, and its token count as the
/// server reports it (an end-of-generation token counts, as in TGI).
fn engine_output(engine: &Engine, prompt: &str, chat: bool) -> (String, usize) {
    let ids = engine.encode_prompt(prompt, chat).unwrap();
    let params = GenerateParams {
        max_new_tokens: MAX_NEW,
        ..Default::default()
    };
    let g = generate(&engine.model, &engine.tokenizer, ids, params, |_, _| {}).unwrap();
    let eos = usize::from(g.finish_reason == servebench_engine::FinishReason::EosToken);
    (g.text, g.generated_ids.len() + eos)
}

#[test]
fn pypi_clients_get_the_engines_greedy_outputs() {
    let Some(engine) = real_engine() else { return };
    let server = TestServer::start(engine.clone(), config_for(&engine));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/clients.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(&server.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let request = json!({"prompts": PROMPTS, "max_new_tokens": MAX_NEW});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.code() == Some(3) {
        return skip("python packages text-generation, huggingface_hub, openai are not installed");
    }
    assert!(
        out.status.success(),
        "clients.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut checked = 0;
    for (mode, runs) in results.as_object().unwrap() {
        let chat = mode.starts_with("openai.chat");
        for (i, run) in runs.as_array().unwrap().iter().enumerate() {
            let (text, tokens) = engine_output(&engine, PROMPTS[i], chat);
            assert_eq!(
                run["text"].as_str(),
                Some(text.as_str()),
                "{mode}, prompt {i}"
            );
            if let Some(final_text) = run.get("final_text") {
                assert_eq!(
                    final_text.as_str(),
                    Some(text.as_str()),
                    "{mode} final text, prompt {i}"
                );
            }
            if let Some(n) = run.get("tokens") {
                assert_eq!(
                    n.as_u64(),
                    Some(tokens as u64),
                    "{mode} token count, prompt {i}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 9 * PROMPTS.len());
}
