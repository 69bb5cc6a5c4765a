//! Chat template parity: real Llama-family models' templates (the
//! `models/templates/*.jinja` of the llama.cpp tree the peers script
//! unpacks) render the same text through the engine as through
//! llama-cpp-python's Jinja formatter, for conversations with a system
//! prompt, several turns, and none.

mod support;

use serde_json::{json, Value};
use servebench_engine::chat_template::{ChatTemplate, Message};

/// The Llama-family templates of the llama.cpp tree (the tool-use-only
/// Hermes variants need `tools`, which these conversations do not give).
const TEMPLATES: [&str; 8] = [
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "meta-llama-Llama-3.3-70B-Instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "HuggingFaceTB-SmolLM3-3B.jinja",
    "microsoft-Phi-3.5-mini-instruct.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
];

fn conversations() -> Vec<(Vec<Message>, bool)> {
    let m = Message::new;
    vec![
        (
            vec![
                m("system", "You are a terse assistant."),
                m("user", "What is the capital of France?"),
            ],
            true,
        ),
        (
            vec![
                m("user", "Hi!"),
                m("assistant", "Hello. How can I help?"),
                m("user", "Name  three colours,\nplease."),
            ],
            true,
        ),
        (vec![m("user", "Write a haiku about llamas.")], false),
        (
            vec![
                m("system", "Answer in French."),
                m("user", "Good morning"),
                m("assistant", "Bonjour"),
                m("user", "And good night?"),
            ],
            true,
        ),
    ]
}

#[test]
fn llama_family_templates_render_as_llamacpp_does() {
    let Some(dir) = support::llamacpp_tree("models/templates") else {
        return;
    };
    let (bos, eos) = ("<BOS>", "<EOS>");
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for name in TEMPLATES {
        let source = std::fs::read_to_string(dir.join(name)).unwrap();
        let tmpl = ChatTemplate::new(&source, bos, eos);
        for (messages, add_generation_prompt) in conversations() {
            cases.push(json!({
                "template": source, "bos": bos, "eos": eos,
                "messages": messages, "add_generation_prompt": add_generation_prompt,
            }));
            let rendered = tmpl.as_ref().map_err(|e| e.to_string()).and_then(|t| {
                t.render(&messages, add_generation_prompt)
                    .map_err(|e| e.to_string())
            });
            ours.push((name, rendered));
        }
    }
    let Some(Value::Array(reference)) =
        support::reference("chat_template_ref.py", &Value::Array(cases))
    else {
        return;
    };
    let mut failures = Vec::new();
    for ((name, ours), theirs) in ours.iter().zip(&reference) {
        match (ours, theirs.get("prompt").and_then(Value::as_str)) {
            (Ok(a), Some(b)) if a == b => {}
            (Err(_), None) => {} // both refuse (a template's raise_exception)
            (a, b) => failures.push(format!(
                "{name}:\n ours:      {a:?}\n llama.cpp: {:?}",
                b.map(str::to_string).ok_or(theirs.get("error"))
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} renders differ\n{}",
        failures.len(),
        ours.len(),
        failures.join("\n")
    );
}
