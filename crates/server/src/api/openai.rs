//! OpenAI's API: `/v1/completions`, `/v1/chat/completions` (streaming with
//! `[DONE]` and `stream_options.include_usage`), `/v1/models`, with vLLM's
//! extensions (`top_k`, `repetition_penalty`, `min_tokens`, `ignore_eos`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use servebench_engine::chat_template::Message;
use servebench_engine::FinishReason;
use utoipa::ToSchema;

use super::sse::{self, json_event, StreamWriter};
use super::stop_text::StopText;
use super::tgi::timing_headers;
use super::{counted, read_json, AppState};
use crate::error::{ApiError, OpenAiError};
use crate::infer::{Ended, StreamEvent};
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
    /// Only 0 is supported.
    pub presence_penalty: Option<f32>,
    /// Only 0 is supported.
    pub frequency_penalty: Option<f32>,
    /// Only 0 is supported.
    pub min_p: Option<f32>,
    /// Only 1 is supported.
    pub n: Option<u32>,
    pub seed: Option<i64>,
    pub stop: Option<StopInput>,
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// vLLM: generate at least this many tokens.
    pub min_tokens: Option<u64>,
    /// vLLM: keep going past end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Not supported; must be absent or empty.
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
    /// Only absent/0 is supported.
    #[serde(default)]
    pub logprobs: Option<u32>,
    /// Only 1 is supported.
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
    /// Only false is supported.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Not supported; must be absent or empty.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<serde_json::Value>>,
    /// Only `{"type": "text"}` is supported.
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
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
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
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Delta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
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
    if s.n.is_some_and(|n| n != 1) {
        return Err(unsupported("n", "other than 1"));
    }
    for (param, v) in [
        ("presence_penalty", s.presence_penalty),
        ("frequency_penalty", s.frequency_penalty),
    ] {
        if v.is_some_and(|v| !(-2.0..=2.0).contains(&v)) {
            return Err(ApiError::invalid(
                param,
                format!("`{param}` must be between -2 and 2"),
            ));
        }
        if v.is_some_and(|v| v != 0.0) {
            return Err(unsupported(param, "other than 0"));
        }
    }
    if s.min_p.is_some_and(|p| p != 0.0) {
        return Err(unsupported("min_p", "other than 0"));
    }
    if s.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(unsupported("logit_bias", "(non-empty)"));
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
    })
}

/// Validation messages in OpenAI's field names.
fn openai_names(e: ApiError, prompt_field: &'static str) -> ApiError {
    match e {
        ApiError::Validation { message, param } => ApiError::Validation {
            message: message
                .replace("`max_new_tokens`", "`max_tokens`")
                .replace("`inputs`", &format!("`{prompt_field}`")),
            param: param.map(|p| match p {
                "max_new_tokens" => "max_tokens",
                "inputs" => prompt_field,
                other => other,
            }),
        },
        other => other,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn next_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{:x}-{}",
        unix_now(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn finish_reason(r: FinishReason) -> String {
    match r {
        FinishReason::Length => "length",
        FinishReason::EosToken | FinishReason::StopSequence => "stop",
    }
    .into()
}

fn usage(end: &Ended) -> Usage {
    Usage {
        prompt_tokens: end.prompt_tokens,
        completion_tokens: end.generated_tokens,
        total_tokens: end.prompt_tokens + end.generated_tokens,
    }
}

/// What differs between the two routes' responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Completions,
    Chat,
}

/// Builds one response object (or chunk) of either route.
struct Shape {
    route: Route,
    id: String,
    created: u64,
    model: String,
}

impl Shape {
    fn new(route: Route, model: &str) -> Self {
        let prefix = match route {
            Route::Completions => "cmpl",
            Route::Chat => "chatcmpl",
        };
        Self {
            route,
            id: next_id(prefix),
            created: unix_now(),
            model: model.to_string(),
        }
    }

    /// `text` with `finish`; `streaming` chooses chunk shapes.
    fn body(
        &self,
        streaming: bool,
        role: bool,
        text: Option<String>,
        finish: Option<String>,
        usage: Option<Usage>,
        choices: bool,
    ) -> serde_json::Value {
        let value = match self.route {
            Route::Completions => serde_json::to_value(Completion {
                id: self.id.clone(),
                object: "text_completion".into(),
                created: self.created,
                model: self.model.clone(),
                choices: choices
                    .then(|| CompletionChoice {
                        index: 0,
                        text: text.unwrap_or_default(),
                        logprobs: None,
                        finish_reason: finish,
                    })
                    .into_iter()
                    .collect(),
                usage,
            }),
            Route::Chat => {
                let delta = Delta {
                    role: role.then(|| "assistant".to_string()),
                    content: text,
                };
                serde_json::to_value(ChatCompletion {
                    id: self.id.clone(),
                    object: if streaming {
                        "chat.completion.chunk"
                    } else {
                        "chat.completion"
                    }
                    .into(),
                    created: self.created,
                    model: self.model.clone(),
                    choices: choices
                        .then(|| ChatChoice {
                            index: 0,
                            message: (!streaming).then(|| delta.clone()),
                            delta: streaming.then_some(delta),
                            logprobs: None,
                            finish_reason: finish,
                        })
                        .into_iter()
                        .collect(),
                    usage,
                })
            }
        };
        value.unwrap_or_default()
    }
}

/// Streams either route's chunks, ending with `[DONE]`.
struct OpenAiStream {
    shape: Shape,
    stop: StopText,
    include_usage: bool,
    /// Text to send before the first token (`echo`).
    prefix: Option<String>,
    role_sent: bool,
}

impl OpenAiStream {
    fn chunk(&self, text: Option<String>, finish: Option<String>) -> Event {
        json_event(&self.shape.body(true, false, text, finish, None, true))
    }

    fn text(&mut self, piece: &str, out: &mut Vec<Event>) {
        if self.shape.route == Route::Chat && !self.role_sent {
            self.role_sent = true;
            let role = self
                .shape
                .body(true, true, Some(String::new()), None, None, true);
            out.push(json_event(&role));
        }
        let mut text = self.prefix.take().unwrap_or_default();
        text.push_str(&self.stop.push(piece));
        if !text.is_empty() {
            out.push(self.chunk(Some(text), None));
        }
    }
}

impl StreamWriter for OpenAiStream {
    fn write(&mut self, event: StreamEvent) -> Vec<Event> {
        let mut out = Vec::new();
        match event {
            StreamEvent::Token(t) => self.text(&t.text, &mut out),
            StreamEvent::Last(t, end) => {
                self.text(&t.text, &mut out);
                let rest = self.stop.finish();
                if !rest.is_empty() {
                    out.push(self.chunk(Some(rest), None));
                }
                let empty = match self.shape.route {
                    Route::Completions => Some(String::new()),
                    Route::Chat => None,
                };
                out.push(self.chunk(empty, Some(finish_reason(end.finish_reason))));
                if self.include_usage {
                    let u = self
                        .shape
                        .body(true, false, None, None, Some(usage(&end)), false);
                    out.push(json_event(&u));
                }
                out.push(Event::default().data("[DONE]"));
            }
            StreamEvent::Error(e) => {
                out.push(json_event(&ApiError::Generation(e).openai_body()));
                out.push(Event::default().data("[DONE]"));
            }
        }
        out
    }
}

/// How the answer is delivered.
struct Delivery {
    stream: bool,
    include_usage: bool,
    /// The prompt text to put before the generated text (`echo`).
    echo: Option<String>,
}

impl Delivery {
    fn of(s: &Sampling, echo: Option<String>) -> Self {
        Self {
            stream: s.stream,
            include_usage: s.stream_options.as_ref().is_some_and(|o| o.include_usage),
            echo,
        }
    }
}

/// Runs a request of either route.
async fn run(
    state: &AppState,
    shape: Shape,
    prompt: Prompt,
    params: Parameters,
    delivery: Delivery,
    received: Instant,
) -> Result<Response, ApiError> {
    let prompt_field = match shape.route {
        Route::Completions => "prompt",
        Route::Chat => "messages",
    };
    let stops = params.stop.clone();
    let permit = state.admit()?;
    let valid = state
        .validator
        .validate(prompt, params, received)
        .map_err(|e| openai_names(e, prompt_field))?;
    let validation = valid.validation;
    let generation = state.infer.submit(valid, permit)?;
    if delivery.stream {
        let writer = OpenAiStream {
            shape,
            stop: StopText::new(stops),
            include_usage: delivery.include_usage,
            prefix: delivery.echo,
            role_sent: false,
        };
        return Ok(sse::respond(generation, writer));
    }
    let (tokens, end) = generation.collect().await?;
    let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
    let text = delivery.echo.unwrap_or_default() + &StopText::cut(&stops, &text);
    let body = shape.body(
        false,
        true,
        Some(text),
        Some(finish_reason(end.finish_reason)),
        Some(usage(&end)),
        true,
    );
    let mut headers = HeaderMap::new();
    timing_headers(&mut headers, validation, received.elapsed(), &end);
    Ok((headers, Json(body)).into_response())
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
    if req.logprobs.is_some_and(|n| n > 0) {
        return Err(unsupported("logprobs", "> 0").into());
    }
    if req.best_of.is_some_and(|n| n != 1) {
        return Err(unsupported("best_of", "other than 1").into());
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
    let params = parameters(&req.sampling, Some(req.max_tokens.unwrap_or(16)))?;
    let shape = Shape::new(Route::Completions, &model_name(&state, req.model));
    let delivery = Delivery::of(&req.sampling, echo);
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
    if req.logprobs == Some(true) {
        return Err(unsupported("logprobs", "= true").into());
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(unsupported("tools", "(function calling)").into());
    }
    if let Some(format) = &req.response_format {
        if format.get("type").and_then(|t| t.as_str()) != Some("text") {
            return Err(unsupported("response_format", "other than {\"type\": \"text\"}").into());
        }
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
            Ok(Message::new(&m.role, &text))
        })
        .collect::<Result<_, ApiError>>()?;
    let rendered = state
        .validator
        .engine()
        .render_chat(&messages)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    let max_tokens = req.max_completion_tokens.or(req.max_tokens);
    let params = parameters(&req.sampling, max_tokens)?;
    let shape = Shape::new(Route::Chat, &model_name(&state, req.model));
    let delivery = Delivery::of(&req.sampling, None);
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
