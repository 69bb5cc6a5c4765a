//! Chat template parity: real Llama-family models' templates (the
//! `models/templates/*.jinja` of the llama.cpp tree the peers script
//! unpacks) render the same text through the engine as through
//! llama-cpp-python's Jinja formatter, for conversations with a system
//! prompt, several turns, and none, with and without tools where the
//! template takes them.

mod support;

use serde_json::{json, Value};
use servebench_engine::chat_template::{ChatTemplate, Message};

/// The Llama-family templates of the llama.cpp tree.
const TEMPLATES: [&str; 10] = [
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "meta-llama-Llama-3.3-70B-Instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "HuggingFaceTB-SmolLM3-3B.jinja",
    "microsoft-Phi-3.5-mini-instruct.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
];

/// OpenAI-style function definitions, given to every template that reads
/// `tools` (the Hermes tool-use variants require them).
fn tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city's name"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city"]
            }
        }
    }])
}

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
        let takes_tools = tmpl.as_ref().is_ok_and(|t| t.takes_tools());
        let mut convs: Vec<(Vec<Message>, bool, Option<Value>)> = conversations()
            .into_iter()
            .map(|(m, g)| (m, g, None))
            .collect();
        if takes_tools {
            let with_tools: Vec<_> = convs
                .iter()
                .map(|(m, g, _)| (m.clone(), *g, Some(tools())))
                .collect();
            // Tool-use-only templates fail without tools in both renderers.
            if name.contains("tool_use") {
                convs = with_tools;
            } else {
                convs.extend(with_tools);
            }
        }
        for (messages, add_generation_prompt, tools) in convs {
            cases.push(json!({
                "template": source, "bos": bos, "eos": eos,
                "messages": messages, "add_generation_prompt": add_generation_prompt,
                "tools": tools,
            }));
            let rendered = tmpl.as_ref().map_err(|e| e.to_string()).and_then(|t| {
                t.render_with_tools(&messages, add_generation_prompt, tools.as_ref())
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
