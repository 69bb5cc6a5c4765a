//! OpenAI's answers from generations: `n` choices (or `best_of` ranked
//! down to `n`), whole or streamed as chunks, with the stop sequence cut
//! off, the prompt echoed, log-probabilities in each route's shape and
//! usage summed over choices.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::future::try_join_all;
use servebench_engine::{Engine, FinishReason};

use super::logprobs::{self, ChatLogprobs, CompletionLogprobs, CompletionLogprobsBuilder};
use super::openai::{ChatChoice, ChatCompletion, Completion, CompletionChoice, Delta, Usage};
use super::sse::{self, json_event, StreamWriter};
use super::stop_text::StopText;
use super::tgi::timing_headers;
use super::tools::{self, ToolCall, ToolMode};
use super::AppState;
use crate::error::ApiError;
use crate::infer::{Ended, GeneratedToken, StreamEvent};
use crate::validation::{Parameters, Prompt};

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

/// Usage of a request: the prompt once, the completions of every choice.
fn usage<'a>(ends: impl IntoIterator<Item = &'a Ended>) -> Usage {
    let mut u = Usage {
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
    };
    for end in ends {
        u.prompt_tokens = end.prompt_tokens;
        u.completion_tokens += end.generated_tokens;
    }
    u.total_tokens = u.prompt_tokens + u.completion_tokens;
    u
}

/// What differs between the two routes' responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Completions,
    Chat,
}

impl Route {
    /// The field OpenAI's messages name for the prompt.
    fn prompt_field(self) -> &'static str {
        match self {
            Route::Completions => "prompt",
            Route::Chat => "messages",
        }
    }
}

/// What one choice says in a response or a chunk.
#[derive(Debug, Default)]
struct Part {
    index: usize,
    /// Chat: announce the assistant's role.
    role: bool,
    text: Option<String>,
    finish: Option<String>,
    chat_logprobs: Option<ChatLogprobs>,
    completion_logprobs: Option<CompletionLogprobs>,
    tool_calls: Option<Vec<ToolCall>>,
}

/// Builds one response object (or chunk) of either route.
pub struct Shape {
    route: Route,
    id: String,
    created: u64,
    model: String,
}

impl Shape {
    pub fn new(route: Route, model: &str) -> Self {
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

    /// A response (or, `streaming`, a chunk) holding `parts`.
    fn body(&self, streaming: bool, parts: Vec<Part>, usage: Option<Usage>) -> serde_json::Value {
        let value = match self.route {
            Route::Completions => serde_json::to_value(Completion {
                id: self.id.clone(),
                object: "text_completion".into(),
                created: self.created,
                model: self.model.clone(),
                choices: parts
                    .into_iter()
                    .map(|p| CompletionChoice {
                        index: p.index as u32,
                        text: p.text.unwrap_or_default(),
                        logprobs: p.completion_logprobs,
                        finish_reason: p.finish,
                    })
                    .collect(),
                usage,
            }),
            Route::Chat => serde_json::to_value(ChatCompletion {
                id: self.id.clone(),
                object: if streaming {
                    "chat.completion.chunk"
                } else {
                    "chat.completion"
                }
                .into(),
                created: self.created,
                model: self.model.clone(),
                choices: parts
                    .into_iter()
                    .map(|p| {
                        let delta = Delta {
                            role: p.role.then(|| "assistant".to_string()),
                            content: p.text,
                            tool_calls: p.tool_calls,
                        };
                        ChatChoice {
                            index: p.index as u32,
                            message: (!streaming).then(|| delta.clone()),
                            delta: streaming.then_some(delta),
                            logprobs: p.chat_logprobs,
                            finish_reason: p.finish,
                        }
                    })
                    .collect(),
                usage,
            }),
        };
        value.unwrap_or_default()
    }
}

/// How the answer is delivered.
pub struct Delivery {
    pub stream: bool,
    pub include_usage: bool,
    /// The prompt to put before the generated text (`echo`).
    pub echo: Option<String>,
    /// List log-probabilities with the choices.
    pub logprobs: bool,
    /// Choices returned.
    pub n: usize,
    /// Choices generated, the `n` most likely returned (completions'
    /// `best_of`; at least `n`, only without streaming).
    pub best_of: usize,
    /// How chat answers are read (tool calls or text).
    pub tools: ToolMode,
}

/// One choice's state while streaming.
struct ChoiceStream {
    stop: StopText,
    role_sent: bool,
    /// Echo not sent yet.
    echo_pending: bool,
    logprobs: CompletionLogprobsBuilder,
    /// Text held back until the end shows whether it is a tool call.
    held: String,
}

/// Streams either route's chunks, ending with `[DONE]`.
struct OpenAiStream {
    shape: Shape,
    engine: Arc<Engine>,
    delivery: Delivery,
    prompt_ids: Vec<u32>,
    prompt_text: String,
    choices: Vec<ChoiceStream>,
    ends: Vec<Ended>,
    failed: bool,
}

impl OpenAiStream {
    fn chunk(&self, part: Part) -> Event {
        json_event(&self.shape.body(true, vec![part], None))
    }

    /// The chunks for one token of choice `i`.
    fn token(&mut self, i: usize, t: &GeneratedToken, out: &mut Vec<Event>) {
        let chat = self.shape.route == Route::Chat;
        let tok = &self.engine.tokenizer;
        let c = &mut self.choices[i];
        let mut role = false;
        if chat && !c.role_sent {
            c.role_sent = true;
            role = true;
        }
        let mut text = String::new();
        if c.echo_pending {
            c.echo_pending = false;
            text.push_str(&self.prompt_text);
            if self.delivery.logprobs {
                c.logprobs.prompt(tok, &self.prompt_ids, &t.prompt_logprobs);
            }
        }
        text.push_str(&c.stop.push(&t.text));
        let mut part = Part {
            index: i,
            role,
            ..Part::default()
        };
        match &self.delivery.tools {
            ToolMode::Text => {}
            ToolMode::Arguments(name) => {
                // The call is known from the start: its arguments stream.
                let mut call = ToolCall {
                    index: Some(0),
                    function: tools::FunctionCall {
                        name: None,
                        arguments: std::mem::take(&mut text),
                    },
                    ..ToolCall::default()
                };
                if role {
                    call.id = Some(tools::call_id());
                    call.kind = Some("function".into());
                    call.function.name = Some(name.clone());
                }
                if role || !call.function.arguments.is_empty() {
                    part.tool_calls = Some(vec![call]);
                }
            }
            ToolMode::Call | ToolMode::Maybe(_) => c.held.push_str(&std::mem::take(&mut text)),
        }
        let listed = self.delivery.logprobs && logprobs::listed(t);
        if self.delivery.logprobs {
            if chat {
                part.chat_logprobs = listed.then(|| logprobs::chat(tok, std::slice::from_ref(t)));
            } else {
                c.logprobs.token(tok, t);
                let lp = c.logprobs.take();
                part.completion_logprobs = (!lp.tokens.is_empty()).then_some(lp);
            }
        }
        if role {
            // The role goes alone first, with empty content, as OpenAI's does.
            out.push(self.chunk(Part {
                index: i,
                role: true,
                text: Some(String::new()),
                ..Part::default()
            }));
            part.role = false;
        }
        if !text.is_empty()
            || part.chat_logprobs.is_some()
            || part.completion_logprobs.is_some()
            || part.tool_calls.is_some()
        {
            part.text = (part.tool_calls.is_none()).then_some(text);
            out.push(self.chunk(part));
        }
    }
}

impl StreamWriter for OpenAiStream {
    fn write(&mut self, i: usize, event: StreamEvent) -> Vec<Event> {
        let mut out = Vec::new();
        match event {
            StreamEvent::Token(t) => self.token(i, &t, &mut out),
            StreamEvent::Last(t, end) => {
                self.token(i, &t, &mut out);
                let rest = self.choices[i].stop.finish();
                let mut last = Part {
                    index: i,
                    ..Part::default()
                };
                match &self.delivery.tools {
                    ToolMode::Text => last.text = Some(rest),
                    ToolMode::Arguments(_) => {
                        last.tool_calls = Some(vec![ToolCall {
                            index: Some(0),
                            function: tools::FunctionCall {
                                name: None,
                                arguments: rest,
                            },
                            ..ToolCall::default()
                        }])
                    }
                    mode => {
                        let held = std::mem::take(&mut self.choices[i].held) + &rest;
                        match tools::parse(mode, &held) {
                            Some(mut call) => {
                                call.index = Some(0);
                                last.tool_calls = Some(vec![call]);
                            }
                            None => last.text = Some(held),
                        }
                    }
                }
                let called = last.tool_calls.is_some() && self.delivery.tools != ToolMode::Text;
                if last.text.as_ref().is_some_and(|t| !t.is_empty())
                    || last.tool_calls.as_ref().is_some_and(|c| {
                        c[0].function.name.is_some() || !c[0].function.arguments.is_empty()
                    })
                {
                    out.push(self.chunk(last));
                }
                let empty = match self.shape.route {
                    Route::Completions => Some(String::new()),
                    Route::Chat => None,
                };
                let finish = if called {
                    "tool_calls".to_string()
                } else {
                    finish_reason(end.finish_reason)
                };
                out.push(self.chunk(Part {
                    index: i,
                    text: empty,
                    finish: Some(finish),
                    ..Part::default()
                }));
                self.ends.push(end);
            }
            StreamEvent::Error(e) => {
                self.failed = true;
                out.push(json_event(&ApiError::Generation(e).openai_body()));
            }
        }
        out
    }

    fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        if self.delivery.include_usage && !self.failed {
            let u = self.shape.body(true, Vec::new(), Some(usage(&self.ends)));
            out.push(json_event(&u));
        }
        out.push(Event::default().data("[DONE]"));
        out
    }
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

/// The sum of a choice's token log-probabilities (`best_of`'s ranking).
fn total_logprob(tokens: &[GeneratedToken]) -> f32 {
    tokens.iter().filter_map(|t| t.logprob).sum()
}

/// Runs a request of either route: validates it, submits its choices and
/// answers whole or streamed.
pub async fn run(
    state: &AppState,
    shape: Shape,
    prompt: Prompt,
    params: Parameters,
    delivery: Delivery,
    received: Instant,
) -> Result<Response, ApiError> {
    let prompt_field = shape.route.prompt_field();
    let stops = params.stop.clone();
    let seed = params.seed;
    let permit = state.admit()?;
    let valid = state
        .validator
        .validate(prompt, params, received)
        .map_err(|e| openai_names(e, prompt_field))?;
    let config = state.validator.config();
    let runs = delivery.best_of.max(delivery.n);
    let budget = valid.token_budget() * runs;
    if runs > config.max_concurrent_requests || budget > config.max_batch_total_tokens {
        return Err(ApiError::invalid(
            "n",
            format!(
                "{runs} choices of {} tokens each (prompt + max_tokens) exceed the batch limits: at most {} requests and {} tokens",
                valid.token_budget(),
                config.max_concurrent_requests,
                config.max_batch_total_tokens
            ),
        ));
    }
    let validation = valid.validation;
    let prompt_ids = valid.prompt_ids.clone();
    let engine = state.validator.engine_handle();
    let prompt_text = delivery.echo.clone().unwrap_or_default();
    let mut generations = Vec::with_capacity(runs);
    let mut permit = Some(permit);
    for i in 0..runs {
        let permit = match permit.take() {
            Some(p) => p,
            None => state.infer.admit()?,
        };
        let mut choice = valid.clone();
        // Each choice its own random stream, reproducible from the seed.
        choice.params.sampling.seed = seed.map(|s| s.wrapping_add(i as u64));
        generations.push(state.infer.submit(choice, permit)?);
    }
    if delivery.stream {
        let choices = (0..runs)
            .map(|_| ChoiceStream {
                stop: StopText::new(stops.clone()),
                role_sent: false,
                echo_pending: delivery.echo.is_some(),
                logprobs: CompletionLogprobsBuilder::at(0),
                held: String::new(),
            })
            .collect();
        let writer = OpenAiStream {
            shape,
            engine,
            delivery,
            prompt_ids,
            prompt_text,
            choices,
            ends: Vec::new(),
            failed: false,
        };
        return Ok(sse::respond(generations, writer));
    }
    let mut results = try_join_all(generations.into_iter().map(|g| g.collect())).await?;
    let usage = usage(results.iter().map(|(_, end)| end));
    if delivery.best_of > delivery.n {
        results.sort_by(|a, b| total_logprob(&b.0).total_cmp(&total_logprob(&a.0)));
        results.truncate(delivery.n);
    }
    let tok = &engine.tokenizer;
    let parts = results
        .iter()
        .enumerate()
        .map(|(index, (tokens, end))| {
            let generated: String = tokens.iter().map(|t| t.text.as_str()).collect();
            let text = prompt_text.clone() + &StopText::cut(&stops, &generated);
            let mut part = Part {
                index,
                role: true,
                finish: Some(finish_reason(end.finish_reason)),
                ..Part::default()
            };
            match tools::parse(&delivery.tools, &text) {
                Some(call) => {
                    part.tool_calls = Some(vec![call]);
                    part.finish = Some("tool_calls".into());
                }
                None => part.text = Some(text),
            }
            if delivery.logprobs {
                match shape.route {
                    Route::Chat => part.chat_logprobs = Some(logprobs::chat(tok, tokens)),
                    Route::Completions => {
                        let mut b = CompletionLogprobsBuilder::at(0);
                        if delivery.echo.is_some() {
                            let lps = tokens.first().map_or(&[][..], |t| &t.prompt_logprobs);
                            b.prompt(tok, &prompt_ids, lps);
                        }
                        for t in tokens {
                            b.token(tok, t);
                        }
                        part.completion_logprobs = Some(b.take());
                    }
                }
            }
            part
        })
        .collect();
    let body = shape.body(false, parts, Some(usage));
    let mut headers = HeaderMap::new();
    if let Some((_, end)) = results.first() {
        timing_headers(&mut headers, validation, received.elapsed(), end);
    }
    Ok((headers, Json(body)).into_response())
}
