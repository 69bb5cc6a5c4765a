//! OpenAI's function calling on chat completions: `tools` and
//! `tool_choice` (`none`, `auto`, `required` or one named function). The
//! tools go to the model through its chat template when the template takes
//! them, else in a system message (as TGI does). A required call is
//! constrained to the functions' JSON schemas; with `auto` the answer is a
//! call when it is one of the offered functions written as JSON.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use servebench_engine::chat_template::Message;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::infer::constraint::Grammar;

/// A function the model may call.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The arguments' JSON schema (default: any object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
}

/// One entry of `tools`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Tool {
    /// Only `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

/// The called function in an answer.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct FunctionCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The arguments as JSON text (a fragment of it in a stream chunk).
    pub arguments: String,
}

/// A tool call in `message.tool_calls`, or a piece of one in
/// `delta.tool_calls`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct ToolCall {
    /// Position in the list (stream chunks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: FunctionCall,
}

/// How the generated text is read.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolMode {
    /// Plain text (no tools, or `tool_choice: none`).
    Text,
    /// The text is the arguments of this function (a named `tool_choice`).
    Arguments(String),
    /// The text is `{"name": ..., "arguments": {...}}` (`required`).
    Call,
    /// The text is a call as for `Call` when it is one, else plain text
    /// (`auto`).
    Maybe(Vec<String>),
}

/// What the request's tools change: the messages, the grammar, and how
/// the answer is read.
pub struct ToolPlan {
    pub mode: ToolMode,
    pub grammar: Option<Grammar>,
    /// The tools to render, when the model sees them.
    pub tools: Vec<Tool>,
}

fn invalid(param: &'static str, m: String) -> ApiError {
    ApiError::invalid(param, m)
}

fn schema_of(f: &FunctionDef) -> Value {
    f.parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object"}))
}

/// The grammar of a call to any of `tools`.
fn call_schema(tools: &[Tool]) -> Value {
    let calls: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {
                    "name": {"const": t.function.name},
                    "arguments": schema_of(&t.function),
                },
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    json!({"anyOf": calls})
}

/// Checks `tools` and `tool_choice` and decides what they change.
pub fn plan(tools: Option<&[Tool]>, choice: Option<&Value>) -> Result<ToolPlan, ApiError> {
    let tools = tools.unwrap_or_default();
    for t in tools {
        if t.kind != "function" {
            return Err(invalid(
                "tools",
                format!(
                    "`tools` entries must have `type` `function`. Given: `{}`",
                    t.kind
                ),
            ));
        }
        if t.function.name.is_empty() {
            return Err(invalid("tools", "`tools` functions need a `name`".into()));
        }
        if t.function
            .parameters
            .as_ref()
            .is_some_and(|p| !p.is_object())
        {
            return Err(invalid(
                "tools",
                format!(
                    "`parameters` of function `{}` must be a JSON schema object",
                    t.function.name
                ),
            ));
        }
    }
    let names: Vec<String> = tools.iter().map(|t| t.function.name.clone()).collect();
    let text = ToolPlan {
        mode: ToolMode::Text,
        grammar: None,
        tools: Vec::new(),
    };
    let choice = match choice {
        None | Some(Value::Null) => {
            if tools.is_empty() {
                return Ok(text);
            }
            "auto"
        }
        Some(Value::String(s)) => s.as_str(),
        Some(named @ Value::Object(_)) => {
            let name = named
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        "tool_choice",
                        "`tool_choice` object must be {\"type\": \"function\", \"function\": {\"name\": ...}}".into(),
                    )
                })?;
            let tool = tools.iter().find(|t| t.function.name == name).ok_or_else(|| {
                invalid(
                    "tool_choice",
                    format!(
                        "`tool_choice` names function `{name}`, which is not in `tools` ({})",
                        names.join(", ")
                    ),
                )
            })?;
            return Ok(ToolPlan {
                mode: ToolMode::Arguments(name.to_string()),
                grammar: Some(Grammar::JsonSchema(schema_of(&tool.function))),
                tools: tools.to_vec(),
            });
        }
        Some(other) => {
            return Err(invalid(
                "tool_choice",
                format!("`tool_choice` must be `none`, `auto`, `required` or a named function. Given: {other}"),
            ))
        }
    };
    match choice {
        "none" => Ok(text),
        "auto" | "required" if tools.is_empty() => Err(invalid(
            "tool_choice",
            format!("`tool_choice` `{choice}` needs `tools`"),
        )),
        "auto" => Ok(ToolPlan {
            mode: ToolMode::Maybe(names),
            grammar: None,
            tools: tools.to_vec(),
        }),
        "required" => Ok(ToolPlan {
            mode: ToolMode::Call,
            grammar: Some(Grammar::JsonSchema(call_schema(tools))),
            tools: tools.to_vec(),
        }),
        other => Err(invalid(
            "tool_choice",
            format!("`tool_choice` must be `none`, `auto`, `required` or a named function. Given: `{other}`"),
        )),
    }
}

/// The system text that offers `tools` to a model whose chat template does
/// not take them.
pub fn tools_prompt(tools: &[Tool]) -> String {
    let list: Vec<Value> = tools
        .iter()
        .map(|t| serde_json::to_value(&t.function).unwrap_or(Value::Null))
        .collect();
    format!(
        "You can call functions. To call one, answer with only a JSON object \
         {{\"name\": <function name>, \"arguments\": <arguments object>}}. \
         The functions, as JSON schemas:\n{}",
        Value::Array(list)
    )
}

/// `messages` with the tools offered in the system message (the first
/// message's, or a new one).
pub fn with_tools_prompt(mut messages: Vec<Message>, tools: &[Tool]) -> Vec<Message> {
    if tools.is_empty() {
        return messages;
    }
    let prompt = tools_prompt(tools);
    match messages.first_mut() {
        Some(m) if m.role == "system" => {
            m.content.push_str("\n\n");
            m.content.push_str(&prompt);
        }
        _ => messages.insert(0, Message::new("system", &prompt)),
    }
    messages
}

/// A new call id, as OpenAI's `call_...`.
pub fn call_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "call_{:016x}",
        NEXT.fetch_add(1, Ordering::Relaxed) ^ 0x5eb0_0000_0000
    )
}

/// The JSON object in `text`, unwrapped from the `<tool_call>` tags or code
/// fences small models like to add.
fn json_in(text: &str) -> Option<Value> {
    let t = text.trim();
    let t = t
        .strip_prefix("<tool_call>")
        .map_or(t, |r| r.trim_end().trim_end_matches("</tool_call>"));
    let t = t
        .trim()
        .strip_prefix("```json")
        .or_else(|| t.trim().strip_prefix("```"))
        .map_or(t, |r| r.trim_end().trim_end_matches("```"));
    serde_json::from_str(t.trim()).ok()
}

/// Reads a finished answer: the tool call it makes, if any.
pub fn parse(mode: &ToolMode, text: &str) -> Option<ToolCall> {
    let (name, arguments) = match mode {
        ToolMode::Text => return None,
        ToolMode::Arguments(name) => (name.clone(), text.trim().to_string()),
        ToolMode::Call | ToolMode::Maybe(_) => {
            let v = json_in(text)?;
            let name = v.get("name")?.as_str()?.to_string();
            if let ToolMode::Maybe(names) = mode {
                if !names.contains(&name) {
                    return None;
                }
            }
            let args = v.get("arguments").or_else(|| v.get("parameters"))?;
            (name, args.to_string())
        }
    };
    Some(ToolCall {
        index: None,
        id: Some(call_id()),
        kind: Some("function".into()),
        function: FunctionCall {
            name: Some(name),
            arguments,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<Tool> {
        serde_json::from_value(json!([
            {"type": "function", "function": {"name": "get_weather",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time"}}
        ]))
        .unwrap()
    }

    #[test]
    fn choices_decide_grammar_and_reading() {
        let t = tools();
        assert_eq!(
            plan(Some(&t), None).unwrap().mode,
            ToolMode::Maybe(vec!["get_weather".into(), "get_time".into()])
        );
        assert_eq!(
            plan(Some(&t), Some(&json!("none"))).unwrap().mode,
            ToolMode::Text
        );
        let req = plan(Some(&t), Some(&json!("required"))).unwrap();
        assert_eq!(req.mode, ToolMode::Call);
        assert!(req.grammar.is_some());
        let named = plan(
            Some(&t),
            Some(&json!({"type": "function", "function": {"name": "get_weather"}})),
        )
        .unwrap();
        assert_eq!(named.mode, ToolMode::Arguments("get_weather".into()));
        for bad in [
            json!({"type": "function", "function": {"name": "nope"}}),
            json!("sometimes"),
            json!(3),
        ] {
            let e = plan(Some(&t), Some(&bad)).err().unwrap();
            assert!(e.to_string().contains("tool_choice"), "{e}");
        }
        assert!(plan(None, Some(&json!("required"))).is_err());
    }

    #[test]
    fn answers_are_read_as_calls_only_when_they_are_calls() {
        let names = ToolMode::Maybe(vec!["get_time".into()]);
        let call = parse(
            &names,
            "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>",
        )
        .unwrap();
        assert_eq!(call.function.name.as_deref(), Some("get_time"));
        assert_eq!(call.function.arguments, "{}");
        assert!(parse(&names, "It is noon.").is_none());
        assert!(parse(&names, "{\"name\": \"other\", \"arguments\": {}}").is_none());
        let args = parse(&ToolMode::Arguments("f".into()), " {\"a\": 1}").unwrap();
        assert_eq!(args.function.arguments, "{\"a\": 1}");
    }
}
