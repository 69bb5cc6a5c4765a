//! OpenAI's API: `/v1/completions`, `/v1/chat/completions` (streaming with
//! `[DONE]` and `stream_options.include_usage`), `/v1/models`, with vLLM's
//! extensions (`top_k`, `repetition_penalty`, `min_tokens`, `ignore_eos`).

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use servebench_engine::chat_template::Message;
use utoipa::ToSchema;

use super::choices::{run, Delivery, Route, Shape};
use super::logprobs::{ChatLogprobs, CompletionLogprobs};
use super::tools::{self, Tool, ToolCall, ToolMode};
use super::{counted, read_json, AppState};
use crate::error::{ApiError, OpenAiError};
use crate::infer::constraint::Grammar;
use crate::validation::{Parameters, Prompt};

/// A prompt: text, token ids, or a one-element list of either.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

/// One stop string or several.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum StopInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling fields both routes share (OpenAI's and vLLM's names).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(default)]
pub struct Sampling {
    /// 0 to 2; 0 is greedy. Default 1 (sampling), as OpenAI.
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// vLLM: -1 or 0 disables.
    pub top_k: Option<i64>,
    pub repetition_penalty: Option<f32>,
    /// -2 to 2: subtracted once from every token already generated.
    pub presence_penalty: Option<f32>,
    /// -2 to 2: subtracted per time a token was already generated.
    pub frequency_penalty: Option<f32>,
    /// Only 0 is supported.
    pub min_p: Option<f32>,
    /// Choices to generate (default 1); all of them must fit the batch limits.
    pub n: Option<u32>,
    pub seed: Option<i64>,
    pub stop: Option<StopInput>,
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// vLLM: generate at least this many tokens.
    pub min_tokens: Option<u64>,
    /// vLLM: keep going past end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Token id (as a string) to a bias between -100 and 100 added to its logit.
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    pub user: Option<String>,
}

/// `POST /v1/completions` body.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CompletionRequest {
    /// Any name; this server serves one model.
    #[serde(default)]
    pub model: Option<String>,
    pub prompt: PromptInput,
    /// Default 16, as OpenAI.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub echo: bool,
    /// List the log-probabilities of the chosen tokens and of this many
    /// most likely ones (0 to 5); with `echo`, the prompt's too.
    #[serde(default)]
    pub logprobs: Option<u32>,
    /// Generate this many choices and return the `n` most likely (by the
    /// sum of their tokens' log-probabilities); not with `stream`.
    #[serde(default)]
    pub best_of: Option<u32>,
    /// Not supported.
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// Message content: text or a list of parts (text parts only).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub name: Option<String>,
    /// An earlier assistant turn's calls (shown to the model as their JSON).
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A `tool` message: the call it answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    /// Default: up to `--max-total-tokens`.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// List the log-probabilities of the chosen tokens.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// With `logprobs`: also list this many most likely tokens (0 to 20).
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    /// Functions the model may call.
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    /// `none`, `auto` (the default with tools), `required`, or
    /// `{"type": "function", "function": {"name": ...}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<serde_json::Value>,
    /// `{"type": "text"}`, `{"type": "json_object"}` (any JSON object) or
    /// `{"type": "json_schema", "json_schema": {"name": ..., "schema": {...},
    /// "strict": true}}`: the output is constrained to match.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<serde_json::Value>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompletionChoice {
    pub index: u32,
    pub text: String,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<String>,
}

/// A completion, or one chunk of a streamed one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Completion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Delta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<String>,
}

/// A chat completion, or one chunk of a streamed one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}

fn unsupported(param: &'static str, what: &str) -> ApiError {
    ApiError::invalid(
        param,
        format!("`{param}` {what} is not supported by this server"),
    )
}

/// OpenAI's sampling fields in the server's neutral form.
fn parameters(s: &Sampling, max_tokens: Option<u64>) -> Result<Parameters, ApiError> {
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            "temperature",
            "`temperature` must be between 0 and 2",
        ));
    }
    if s.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(ApiError::invalid("top_p", "`top_p` must be in (0, 1]"));
    }
    if s.top_k.is_some_and(|k| k < -1) {
        return Err(ApiError::invalid(
            "top_k",
            "`top_k` must be -1 (disabled) or positive",
        ));
    }
    if s.n == Some(0) {
        return Err(ApiError::invalid("n", "`n` must be at least 1"));
    }
    if s.min_p.is_some_and(|p| p != 0.0) {
        return Err(unsupported("min_p", "other than 0"));
    }
    let mut logit_bias = Vec::new();
    for (key, value) in s.logit_bias.iter().flatten() {
        let bad = || {
            ApiError::invalid(
                "logit_bias",
                format!("`logit_bias` maps token ids to numbers. Given: {key:?}: {value}"),
            )
        };
        let id: u32 = key.parse().map_err(|_| bad())?;
        let bias = value.as_f64().ok_or_else(bad)?;
        logit_bias.push((id, bias as f32));
    }
    if max_tokens == Some(0) {
        return Err(ApiError::invalid(
            "max_tokens",
            "`max_tokens` must be at least 1",
        ));
    }
    let greedy = temperature == 0.0;
    Ok(Parameters {
        do_sample: !greedy,
        temperature: (!greedy).then_some(temperature),
        top_k: s.top_k.filter(|k| *k > 0),
        top_p: s.top_p.filter(|p| *p < 1.0),
        typical_p: None,
        repetition_penalty: s.repetition_penalty.filter(|p| *p != 1.0),
        presence_penalty: s.presence_penalty,
        frequency_penalty: s.frequency_penalty,
        logit_bias,
        seed: s.seed.map(|v| v as u64),
        max_new_tokens: max_tokens,
        min_new_tokens: s.min_tokens.unwrap_or(0),
        stop: match &s.stop {
            None => Vec::new(),
            Some(StopInput::One(x)) => vec![x.clone()],
            Some(StopInput::Many(v)) => v.clone(),
        },
        ignore_eos: s.ignore_eos,
        truncate: None,
        want_logprobs: false,
        top_logprobs: 0,
        prompt_logprobs: false,
        grammar: None,
    })
}

/// OpenAI's `response_format`: text, JSON mode, or a JSON schema.
fn response_format(format: &serde_json::Value) -> Result<Option<Grammar>, ApiError> {
    let bad = |m: &str| ApiError::invalid("response_format", format!("`response_format` {m}"));
    match format.get("type").and_then(|t| t.as_str()) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Grammar::JsonObject)),
        Some("json_schema") => {
            let spec = format
                .get("json_schema")
                .ok_or_else(|| bad("of type `json_schema` needs a `json_schema` object"))?;
            match spec.get("schema") {
                None => Ok(Some(Grammar::JsonObject)),
                Some(schema) => Ok(Some(Grammar::JsonSchema(schema.clone()))),
            }
        }
        _ => Err(bad(
            "must have `type` `text`, `json_object` or `json_schema`",
        )),
    }
}

/// Text completion.
#[utoipa::path(post, path = "/v1/completions", request_body = CompletionRequest,
    responses((status = 200, body = Completion), (status = 400), (status = 429)))]
pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OpenAiError> {
    let received = Instant::now();
    let limit = state.validator.config().payload_limit;
    let req: CompletionRequest = read_json(&headers, body, limit).await.map_err(counted)?;
    if req.logprobs.is_some_and(|n| n > MAX_COMPLETION_LOGPROBS) {
        return Err(ApiError::invalid(
            "logprobs",
            format!("`logprobs` must be between 0 and {MAX_COMPLETION_LOGPROBS}"),
        )
        .into());
    }
    let n = req.sampling.n.unwrap_or(1);
    if let Some(best_of) = req.best_of {
        if best_of < n {
            return Err(ApiError::invalid("best_of", "`best_of` must be >= `n`").into());
        }
        if best_of > n && req.sampling.stream {
            return Err(ApiError::invalid(
                "best_of",
                "`best_of` greater than `n` cannot be streamed",
            )
            .into());
        }
    }
    if req.suffix.is_some() {
        return Err(unsupported("suffix", "").into());
    }
    let prompt = match req.prompt {
        PromptInput::Text(t) => Prompt::Text(t),
        PromptInput::Ids(ids) => Prompt::Ids(ids),
        PromptInput::Texts(mut v) if v.len() == 1 => Prompt::Text(v.remove(0)),
        PromptInput::IdLists(mut v) if v.len() == 1 => Prompt::Ids(v.remove(0)),
        _ => {
            return Err(ApiError::invalid(
                "prompt",
                "send exactly one prompt per request (batched prompts are not supported)",
            )
            .into())
        }
    };
    let echo = req.echo.then(|| match &prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Ids(ids) => state.validator.engine().tokenizer.decode(ids, false),
    });
    let mut params = parameters(&req.sampling, Some(req.max_tokens.unwrap_or(16)))?;
    let best_of = req.best_of.unwrap_or(n) as usize;
    params.want_logprobs = req.logprobs.is_some() || best_of > n as usize;
    params.top_logprobs = req.logprobs.unwrap_or(0) as usize;
    params.prompt_logprobs = req.echo && req.logprobs.is_some();
    let shape = Shape::new(Route::Completions, &model_name(&state, req.model));
    let mut delivery = delivery(&req.sampling, echo, req.logprobs.is_some());
    delivery.best_of = best_of;
    Ok(run(&state, shape, prompt, params, delivery, received)
        .await
        .map_err(counted)?)
}

/// Chat completion with the model's chat template.
#[utoipa::path(post, path = "/v1/chat/completions", request_body = ChatRequest,
    responses((status = 200, body = ChatCompletion), (status = 400), (status = 429)))]
pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OpenAiError> {
    let received = Instant::now();
    let limit = state.validator.config().payload_limit;
    let req: ChatRequest = read_json(&headers, body, limit).await.map_err(counted)?;
    let logprobs = req.logprobs == Some(true);
    if let Some(top) = req.top_logprobs {
        if top > MAX_CHAT_TOP_LOGPROBS {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!(
                    "`top_logprobs` must be between 0 and {MAX_CHAT_TOP_LOGPROBS}. Given: {top}"
                ),
            )
            .into());
        }
        if top > 0 && !logprobs {
            return Err(ApiError::invalid(
                "top_logprobs",
                "`top_logprobs` needs `logprobs` set to true",
            )
            .into());
        }
    }
    let plan = tools::plan(req.tools.as_deref(), req.tool_choice.as_ref())?;
    let format = match &req.response_format {
        Some(f) => response_format(f)?,
        None => None,
    };
    if format.is_some() && plan.grammar.is_some() {
        return Err(ApiError::invalid(
            "tool_choice",
            "a required tool call and `response_format` cannot constrain the same answer",
        )
        .into());
    }
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` must not be empty").into());
    }
    let messages: Vec<Message> = req
        .messages
        .iter()
        .map(|m| {
            let text = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => text.push_str(t),
                            (kind, _) => {
                                return Err(unsupported(
                                    "messages",
                                    &format!("content part `{kind}`"),
                                ))
                            }
                        }
                    }
                    text
                }
            };
            let mut text = text;
            // An assistant's earlier calls, as the model would have written them.
            for call in m.tool_calls.iter().flatten() {
                let args: serde_json::Value = serde_json::from_str(&call.function.arguments)
                    .unwrap_or_else(|_| call.function.arguments.clone().into());
                let name = call.function.name.clone().unwrap_or_default();
                text.push_str(&serde_json::json!({"name": name, "arguments": args}).to_string());
            }
            Ok(Message::new(&m.role, &text))
        })
        .collect::<Result<_, ApiError>>()?;
    let engine = state.validator.engine();
    let rendered = if plan.tools.is_empty() {
        engine.render_chat(&messages)
    } else if engine.chat_template_takes_tools() {
        let tools = serde_json::to_value(&plan.tools).unwrap_or_default();
        engine.render_chat_with_tools(&messages, &tools)
    } else {
        engine.render_chat(&tools::with_tools_prompt(messages, &plan.tools))
    }
    .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let max_tokens = req.max_completion_tokens.or(req.max_tokens);
    let mut params = parameters(&req.sampling, max_tokens)?;
    params.want_logprobs = logprobs;
    params.top_logprobs = req.top_logprobs.unwrap_or(0) as usize;
    params.grammar = match (format, plan.grammar) {
        (Some(g), _) => Some(("response_format", g)),
        (None, Some(g)) => Some(("tools", g)),
        (None, None) => None,
    };
    let shape = Shape::new(Route::Chat, &model_name(&state, req.model));
    let mut delivery = delivery(&req.sampling, None, logprobs);
    delivery.tools = plan.mode;
    Ok(run(
        &state,
        shape,
        Prompt::Text(rendered),
        params,
        delivery,
        received,
    )
    .await
    .map_err(counted)?)
}

/// OpenAI's limits on listed alternatives per token.
const MAX_COMPLETION_LOGPROBS: u32 = 5;
const MAX_CHAT_TOP_LOGPROBS: u32 = 20;

/// How the answer is delivered, from the shared fields.
fn delivery(s: &Sampling, echo: Option<String>, logprobs: bool) -> Delivery {
    let n = s.n.unwrap_or(1) as usize;
    Delivery {
        stream: s.stream,
        include_usage: s.stream_options.as_ref().is_some_and(|o| o.include_usage),
        echo,
        logprobs,
        n,
        best_of: n,
        tools: ToolMode::Text,
    }
}

fn model_name(state: &AppState, asked: Option<String>) -> String {
    asked.unwrap_or_else(|| state.validator.config().model_id.clone())
}

/// The served model.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, body = ModelList)))]
pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![Model {
            id: state.validator.config().model_id.clone(),
            object: "model".into(),
            created: state.started_unix,
            owned_by: "servebench".into(),
        }],
    })
}
