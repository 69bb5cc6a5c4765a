//! API flavours: how a request body looks and what a response event says.
//! Each flavour is one file; the client and the SSE parser are shared.

mod openai;
pub mod sagemaker;
mod tgi;

pub use openai::discover_model;
pub use tgi::tokenize_offsets;

use serde::{Deserialize, Serialize};

use crate::workload::Prompt;

/// The endpoint's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// Text Generation Inference: `POST /generate_stream` (SSE) or `/generate`.
    Tgi,
    /// OpenAI `POST /v1/completions`.
    OpenaiCompletions,
    /// OpenAI `POST /v1/chat/completions`, the prompt as one user message.
    OpenaiChat,
    /// A SageMaker endpoint of the Hugging Face LLM container: TGI's body,
    /// signed, to the runtime's `invocations` (event-stream when streaming).
    Sagemaker,
}

impl Api {
    /// Parses the `--api` spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "tgi" => Some(Self::Tgi),
            "openai-completions" => Some(Self::OpenaiCompletions),
            "openai-chat" => Some(Self::OpenaiChat),
            "sagemaker" => Some(Self::Sagemaker),
            _ => None,
        }
    }

    /// The `--api` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tgi => "tgi",
            Self::OpenaiCompletions => "openai-completions",
            Self::OpenaiChat => "openai-chat",
            Self::Sagemaker => "sagemaker",
        }
    }

    /// The route, relative to the base URL.
    pub fn path(self, stream: bool) -> &'static str {
        match (self, stream) {
            (Self::Tgi, true) => "/generate_stream",
            (Self::Tgi, false) => "/generate",
            (Self::OpenaiCompletions, _) => "/v1/completions",
            (Self::OpenaiChat, _) => "/v1/chat/completions",
            (Self::Sagemaker, true) => "/invocations-response-stream",
            (Self::Sagemaker, false) => "/invocations",
        }
    }

    /// The JSON body for one prompt.
    pub fn body(self, prompt: &Prompt, params: &RequestParams) -> serde_json::Value {
        let mut body = match self {
            Self::Tgi => tgi::body(prompt, params),
            Self::Sagemaker => sagemaker::body(prompt, params),
            Self::OpenaiCompletions | Self::OpenaiChat => openai::body(self, prompt, params),
        };
        if let Some(extra) = &params.extra_body {
            let target = match self {
                Self::Tgi => &mut body["parameters"],
                _ => &mut body,
            };
            if let Some(map) = target.as_object_mut() {
                map.extend(extra.clone());
            }
        }
        body
    }

    /// What one SSE event's data says.
    pub fn parse_event(self, data: &str) -> Result<EventInfo, String> {
        match self {
            Self::Tgi | Self::Sagemaker => tgi::parse_event(data),
            Self::OpenaiCompletions | Self::OpenaiChat => openai::parse_event(self, data),
        }
    }

    /// What a whole (non-streamed) JSON body says.
    pub fn parse_body(self, body: &[u8]) -> Result<BodyInfo, String> {
        match self {
            Self::Tgi | Self::Sagemaker => tgi::parse_body(body),
            Self::OpenaiCompletions | Self::OpenaiChat => openai::parse_body(body),
        }
    }
}

/// Generation settings shared by every request of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestParams {
    /// Stream the response (SSE); needed for `ttft_ms`, `tpot_ms`, `itl_ms`.
    pub stream: bool,
    /// OpenAI's `model` field.
    pub model_name: Option<String>,
    /// Ask the server to generate exactly `max_new_tokens` (`ignore_eos`).
    pub ignore_eos: bool,
    /// Sampling temperature; `None` or 0 means greedy.
    pub temperature: Option<f64>,
    /// Fields added to every request body (TGI: to its `parameters`), e.g.
    /// a `response_format` or a `grammar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What one streamed event carried.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventInfo {
    /// Generated tokens in this event (0 for keep-alives, role-only chunks and
    /// usage-only chunks).
    pub tokens: u32,
    /// The server's count of generated tokens, when this event reports it.
    pub reported_tokens: Option<u32>,
    /// The API's "generation finished" marker (TGI's final event, an OpenAI
    /// `finish_reason` or `[DONE]`): a stream that ends without one is broken.
    pub finished: bool,
    /// An error the server sent inside the stream.
    pub error: Option<String>,
}

/// What a non-streamed body said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BodyInfo {
    /// The server's count of generated tokens.
    pub reported_tokens: Option<u32>,
}

/// A whole response body as JSON; a body with an `"error"` member is the
/// server's error, in every flavour.
fn json_body(body: &[u8]) -> Result<serde_json::Value, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    match v.get("error") {
        Some(err) => Err(error_text(err)),
        None => Ok(v),
    }
}

/// An `"error"` member as text: a string, or an object's `message`.
fn error_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => o
            .get("message")
            .and_then(|m| m.as_str())
            .map_or_else(|| v.to_string(), str::to_string),
        other => other.to_string(),
    }
}
