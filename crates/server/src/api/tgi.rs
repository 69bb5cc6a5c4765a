//! Text Generation Inference's API: `/generate`, `/generate_stream`, `/`,
//! `/tokenize`, `/info`, `/health`, `/metrics`, with TGI's JSON shapes,
//! defaults and timing headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use servebench_engine::tokenizer::Tokenizer;
use servebench_engine::Engine;
use utoipa::ToSchema;

use super::sse::{self, json_event, StreamWriter};
use super::{counted, read_json, AppState};
use crate::error::{ApiError, TgiError, TgiErrorBody};
use crate::infer::constraint::Grammar;
use crate::infer::{Ended, GeneratedToken, StreamEvent};
use crate::validation::{Parameters, Prompt};

/// TGI's generation parameters.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(default)]
pub struct GenerateParameters {
    /// Only 1 is supported (`--max-best-of`).
    pub best_of: Option<u64>,
    pub temperature: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// -2 to 2: subtracted from a token's logit per time it was generated.
    pub frequency_penalty: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub typical_p: Option<f32>,
    pub do_sample: bool,
    /// Default 100.
    pub max_new_tokens: Option<u64>,
    pub return_full_text: Option<bool>,
    pub stop: Vec<String>,
    pub truncate: Option<u64>,
    /// Not supported; must be false.
    pub watermark: bool,
    pub details: bool,
    /// Return the prompt tokens with their log-probabilities (`details`
    /// only; not when streaming).
    pub decoder_input_details: bool,
    pub seed: Option<u64>,
    /// List this many most likely tokens at each step (0 to 5).
    pub top_n_tokens: Option<u32>,
    /// Constrain the output: `{"type": "json", "value": <JSON schema>}`
    /// or `{"type": "regex", "value": "<regex>"}`.
    #[schema(value_type = Option<Object>)]
    pub grammar: Option<serde_json::Value>,
    /// Ignored (no adapters).
    pub adapter_id: Option<String>,
    /// Extension: keep generating past end-of-sequence tokens.
    pub ignore_eos: bool,
}

/// `POST /generate` and `/generate_stream` body.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct GenerateRequest {
    pub inputs: String,
    #[serde(default)]
    pub parameters: GenerateParameters,
}

/// `POST /` body: `/generate` or `/generate_stream` by `stream`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CompatGenerateRequest {
    pub inputs: String,
    #[serde(default)]
    pub parameters: GenerateParameters,
    #[serde(default)]
    pub stream: bool,
}

/// A generated token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: u32,
    pub text: String,
    pub logprob: Option<f32>,
    pub special: bool,
}

/// A prompt token (`decoder_input_details`) with its log-probability given
/// the tokens before it (null for the first).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PrefillToken {
    pub id: u32,
    pub text: String,
    pub logprob: Option<f32>,
}

/// `details` of a `/generate` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Details {
    /// `length`, `eos_token` or `stop_sequence`.
    pub finish_reason: String,
    pub generated_tokens: u32,
    pub seed: Option<u64>,
    pub prefill: Vec<PrefillToken>,
    pub tokens: Vec<Token>,
    /// `top_n_tokens` most likely tokens at each step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_tokens: Vec<Vec<Token>>,
}

/// `/generate` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GenerateResponse {
    pub generated_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
}

/// `details` of the last stream event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamDetails {
    pub finish_reason: String,
    pub generated_tokens: u32,
    pub seed: Option<u64>,
    pub input_length: u32,
}

/// One `/generate_stream` event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamResponse {
    pub index: u32,
    pub token: Token,
    pub top_tokens: Vec<Token>,
    pub generated_text: Option<String>,
    pub details: Option<StreamDetails>,
}

/// `/tokenize` result item; `start`/`stop` are byte offsets into the text
/// the tokens decode to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SimpleToken {
    pub id: u32,
    pub text: String,
    pub start: usize,
    pub stop: usize,
}

/// `/info` response (TGI's fields that apply here).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Info {
    pub model_id: String,
    pub model_dtype: String,
    pub model_device_type: String,
    pub max_concurrent_requests: usize,
    pub max_best_of: usize,
    pub max_stop_sequences: usize,
    pub max_input_tokens: usize,
    pub max_total_tokens: usize,
    pub waiting_served_ratio: f32,
    pub max_batch_total_tokens: usize,
    pub max_waiting_tokens: usize,
    pub max_batch_size: Option<usize>,
    pub validation_workers: usize,
    pub max_client_batch_size: usize,
    pub router: String,
    pub version: String,
}

const DEFAULT_MAX_NEW_TOKENS: u64 = 100;
/// TGI's launcher default for `--max-top-n-tokens`.
const MAX_TOP_N_TOKENS: u32 = 5;

fn not_supported(param: &'static str, what: &str) -> ApiError {
    ApiError::invalid(
        param,
        format!("`{param}` {what} is not supported by this server"),
    )
}

/// TGI's parameters in the server's neutral form.
fn parameters(
    p: &GenerateParameters,
    stream: bool,
    max_best_of: usize,
) -> Result<Parameters, ApiError> {
    if let Some(b) = p.best_of {
        if b == 0 {
            return Err(ApiError::invalid(
                "best_of",
                "`best_of` must be strictly positive",
            ));
        }
        if b as usize > max_best_of {
            return Err(ApiError::invalid(
                "best_of",
                format!("`best_of` must be <= {max_best_of}"),
            ));
        }
    }
    if p.watermark {
        return Err(not_supported("watermark", "= true"));
    }
    let top_n = p.top_n_tokens.unwrap_or(0);
    if top_n > MAX_TOP_N_TOKENS {
        return Err(ApiError::invalid(
            "top_n_tokens",
            format!("`top_n_tokens` must be >= 0 and <= {MAX_TOP_N_TOKENS}. Given: {top_n}"),
        ));
    }
    if stream && p.decoder_input_details {
        return Err(ApiError::invalid(
            "decoder_input_details",
            "`decoder_input_details` == true is not supported when streaming tokens",
        ));
    }
    Ok(Parameters {
        do_sample: p.do_sample,
        temperature: p.temperature,
        top_k: p.top_k,
        top_p: p.top_p,
        typical_p: p.typical_p,
        repetition_penalty: p.repetition_penalty,
        presence_penalty: None,
        frequency_penalty: p.frequency_penalty,
        logit_bias: Vec::new(),
        seed: p.seed,
        max_new_tokens: Some(p.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS)),
        min_new_tokens: 0,
        stop: p.stop.clone(),
        ignore_eos: p.ignore_eos,
        truncate: p.truncate,
        want_logprobs: p.details || stream,
        top_logprobs: top_n as usize,
        prompt_logprobs: p.details && p.decoder_input_details,
        grammar: match &p.grammar {
            Some(g) => grammar(g)?.map(|g| ("grammar", g)),
            None => None,
        },
    })
}

/// TGI's `grammar`: a JSON schema (as an object or a JSON string) or a regex.
fn grammar(g: &serde_json::Value) -> Result<Option<Grammar>, ApiError> {
    use serde_json::Value;
    let bad = |m: String| ApiError::invalid("grammar", format!("`grammar` {m}"));
    if g.is_null() {
        return Ok(None);
    }
    let value = g.get("value").unwrap_or(&Value::Null);
    match g.get("type").and_then(|t| t.as_str()) {
        Some("json") | Some("json_schema") => {
            let schema = match value {
                Value::String(s) => serde_json::from_str(s)
                    .map_err(|e| bad(format!("value is not valid JSON: {e}")))?,
                // TGI's newer form wraps the schema: {"name", "schema"}.
                Value::Object(o) if g["type"] == "json_schema" => {
                    o.get("schema").cloned().unwrap_or(Value::Null)
                }
                other => other.clone(),
            };
            if !schema.is_object() {
                return Err(bad("value must be a JSON schema (an object)".into()));
            }
            Ok(Some(Grammar::JsonSchema(schema)))
        }
        Some("regex") => match value {
            Value::String(rx) => Ok(Some(Grammar::Regex(rx.clone()))),
            _ => Err(bad("value of type `regex` must be a string".into())),
        },
        _ => Err(bad(
            "must have `type` `json` or `regex` and a `value`".into()
        )),
    }
}

impl From<&GeneratedToken> for Token {
    fn from(t: &GeneratedToken) -> Self {
        Self {
            id: t.id,
            text: t.text.clone(),
            logprob: t.logprob,
            special: t.special,
        }
    }
}

/// A step's most likely tokens as TGI lists them.
fn top_tokens(tok: &Tokenizer, t: &GeneratedToken) -> Vec<Token> {
    t.top
        .iter()
        .map(|&(id, logprob)| Token {
            id,
            text: tok.decode(&[id], false),
            logprob: Some(logprob),
            special: tok.is_eog(id),
        })
        .collect()
}

/// TGI's timing headers, in milliseconds with fractions (TGI rounds to
/// whole milliseconds, too coarse for small models' ~10 ms per token).
pub fn timing_headers(headers: &mut HeaderMap, validation: Duration, total: Duration, end: &Ended) {
    let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("x-compute-type", "cpu".into());
    put("x-compute-time", format!("{:.6}", total.as_secs_f64()));
    put("x-total-time", ms(total));
    put("x-validation-time", ms(validation));
    put("x-queue-time", ms(end.queue));
    put("x-inference-time", ms(end.inference));
    put("x-time-per-token", ms(end.time_per_token()));
    put("x-prompt-tokens", end.prompt_tokens.to_string());
    put("x-generated-tokens", end.generated_tokens.to_string());
}

/// Runs a non-streaming request: the response and its timing headers.
async fn generate_inner(
    state: &AppState,
    req: GenerateRequest,
    received: Instant,
) -> Result<(HeaderMap, GenerateResponse), ApiError> {
    let permit = state.admit()?;
    let p = &req.parameters;
    let params = parameters(p, false, state.validator.config().max_best_of)?;
    let valid = state
        .validator
        .validate(Prompt::Text(req.inputs.clone()), params, received)?;
    let validation = valid.validation;
    let prompt_ids = valid.prompt_ids.clone();
    let (tokens, end) = state.infer.submit(valid, permit)?.collect().await?;
    let mut text: String = tokens.iter().map(|t| t.text.as_str()).collect();
    if p.return_full_text == Some(true) {
        text = req.inputs + &text;
    }
    let details = p.details.then(|| {
        let tok = &state.validator.engine().tokenizer;
        Details {
            finish_reason: end.finish_reason.as_str().into(),
            generated_tokens: end.generated_tokens as u32,
            seed: end.seed,
            prefill: if p.decoder_input_details {
                let logprobs = tokens.first().map_or(&[][..], |t| &t.prompt_logprobs);
                prompt_ids
                    .iter()
                    .enumerate()
                    .map(|(i, &id)| PrefillToken {
                        id,
                        text: tok.decode(&[id], true),
                        logprob: i.checked_sub(1).and_then(|i| logprobs.get(i).copied()),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            tokens: tokens.iter().map(Token::from).collect(),
            top_tokens: if p.top_n_tokens.unwrap_or(0) > 0 {
                tokens.iter().map(|t| top_tokens(tok, t)).collect()
            } else {
                Vec::new()
            },
        }
    });
    let mut headers = HeaderMap::new();
    timing_headers(&mut headers, validation, received.elapsed(), &end);
    Ok((
        headers,
        GenerateResponse {
            generated_text: text,
            details,
        },
    ))
}

/// Generate tokens.
#[utoipa::path(post, path = "/generate", request_body = GenerateRequest,
    responses((status = 200, body = GenerateResponse),
              (status = 422, body = TgiErrorBody), (status = 429, body = TgiErrorBody)))]
pub async fn generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TgiError> {
    let received = Instant::now();
    let limit = state.validator.config().payload_limit;
    let req = read_json(&headers, body, limit).await.map_err(counted)?;
    let (headers, response) = generate_inner(&state, req, received)
        .await
        .map_err(counted)?;
    Ok((headers, Json(response)).into_response())
}

/// Generate tokens, streamed as server-sent events.
#[utoipa::path(post, path = "/generate_stream", request_body = GenerateRequest,
    responses((status = 200, body = StreamResponse, content_type = "text/event-stream"),
              (status = 422, body = TgiErrorBody), (status = 429, body = TgiErrorBody)))]
pub async fn generate_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TgiError> {
    let received = Instant::now();
    let limit = state.validator.config().payload_limit;
    let req = read_json(&headers, body, limit).await.map_err(counted)?;
    Ok(stream_inner(&state, req, received).map_err(counted)?)
}

fn stream_inner(
    state: &AppState,
    req: GenerateRequest,
    received: Instant,
) -> Result<Response, ApiError> {
    let permit = state.admit()?;
    let p = &req.parameters;
    let params = parameters(p, true, state.validator.config().max_best_of)?;
    let valid = state
        .validator
        .validate(Prompt::Text(req.inputs.clone()), params, received)?;
    let generation = state.infer.submit(valid, permit)?;
    let writer = TgiStream {
        engine: state.validator.engine_handle(),
        index: 0,
        text: if p.return_full_text == Some(true) {
            req.inputs
        } else {
            String::new()
        },
        details: p.details,
    };
    Ok(sse::respond(vec![generation], writer))
}

/// Builds TGI's stream events: the last token's event also carries the
/// whole text and (with `details`) how the generation ended.
struct TgiStream {
    engine: Arc<Engine>,
    index: u32,
    text: String,
    details: bool,
}

impl TgiStream {
    fn token(&mut self, t: &GeneratedToken) -> StreamResponse {
        self.index += 1;
        self.text.push_str(&t.text);
        StreamResponse {
            index: self.index,
            token: Token::from(t),
            top_tokens: top_tokens(&self.engine.tokenizer, t),
            generated_text: None,
            details: None,
        }
    }
}

impl StreamWriter for TgiStream {
    fn write(&mut self, _: usize, event: StreamEvent) -> Vec<Event> {
        match event {
            StreamEvent::Token(t) => vec![json_event(&self.token(&t))],
            StreamEvent::Last(t, end) => {
                let mut last = self.token(&t);
                last.generated_text = Some(std::mem::take(&mut self.text));
                last.details = self.details.then(|| StreamDetails {
                    finish_reason: end.finish_reason.as_str().into(),
                    generated_tokens: end.generated_tokens as u32,
                    seed: end.seed,
                    input_length: end.prompt_tokens as u32,
                });
                vec![json_event(&last)]
            }
            StreamEvent::Error(e) => vec![json_event(&ApiError::Generation(e).tgi_body())],
        }
    }
}

/// TGI's compatibility route: `/generate` (as a one-element list) or
/// `/generate_stream`, by `stream`.
#[utoipa::path(post, path = "/", request_body = CompatGenerateRequest,
    responses((status = 200, body = Vec<GenerateResponse>),
              (status = 422, body = TgiErrorBody), (status = 429, body = TgiErrorBody)))]
pub async fn compat_generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TgiError> {
    let received = Instant::now();
    let limit = state.validator.config().payload_limit;
    let req: CompatGenerateRequest = read_json(&headers, body, limit).await.map_err(counted)?;
    let inner = GenerateRequest {
        inputs: req.inputs,
        parameters: req.parameters,
    };
    if req.stream {
        return Ok(stream_inner(&state, inner, received).map_err(counted)?);
    }
    let (headers, response) = generate_inner(&state, inner, received)
        .await
        .map_err(counted)?;
    Ok((headers, Json(vec![response])).into_response())
}

/// Tokenize the inputs as the model would see them.
#[utoipa::path(post, path = "/tokenize", request_body = GenerateRequest,
    responses((status = 200, body = Vec<SimpleToken>), (status = 422, body = TgiErrorBody)))]
pub async fn tokenize(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<SimpleToken>>, TgiError> {
    let limit = state.validator.config().payload_limit;
    let req: GenerateRequest = read_json(&headers, body, limit).await?;
    if req.inputs.is_empty() {
        return Err(ApiError::invalid("inputs", "`inputs` cannot be empty").into());
    }
    let tok = &state.validator.engine().tokenizer;
    let mut offset = 0;
    let tokens = tok
        .encode(&req.inputs, true, true)
        .into_iter()
        .map(|id| {
            let mut bytes = Vec::new();
            tok.token_bytes(id, true, &mut bytes);
            let start = offset;
            offset += bytes.len();
            SimpleToken {
                id,
                text: String::from_utf8_lossy(&bytes).into_owned(),
                start,
                stop: offset,
            }
        })
        .collect();
    Ok(Json(tokens))
}

/// Server and model information.
#[utoipa::path(get, path = "/info", responses((status = 200, body = Info)))]
pub async fn info(State(state): State<AppState>) -> Json<Info> {
    let c = state.validator.config();
    Json(Info {
        model_id: c.model_id.clone(),
        model_dtype: format!("{:?}", state.validator.engine().model.weight_type()),
        model_device_type: "cpu".into(),
        max_concurrent_requests: c.max_concurrent_requests,
        max_best_of: c.max_best_of,
        max_stop_sequences: c.max_stop_sequences,
        max_input_tokens: c.max_input_tokens,
        max_total_tokens: c.max_total_tokens,
        waiting_served_ratio: c.waiting_served_ratio,
        max_batch_total_tokens: c.max_batch_total_tokens,
        max_waiting_tokens: c.max_waiting_tokens,
        max_batch_size: c.max_batch_size,
        validation_workers: 1,
        max_client_batch_size: 1,
        router: "servebench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// 200 while the model thread runs, 503 otherwise.
#[utoipa::path(get, path = "/health",
    responses((status = 200), (status = 503, body = TgiErrorBody)))]
pub async fn health(State(state): State<AppState>) -> Response {
    if state.infer.is_healthy() {
        StatusCode::OK.into_response()
    } else {
        ApiError::Generation("the model thread has stopped".into())
            .into_response_for(crate::error::Api::Tgi)
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}
