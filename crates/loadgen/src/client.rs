//! Sends one request and measures it: status, stream events through the one
//! SSE parser, the API flavour's meaning of each event, and the instants that
//! [`Trace`] turns into metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::sagemaker::PayloadParts;
use crate::api::{Api, RequestParams};
use crate::aws::AwsSigner;
use crate::error::{ErrorKind, LoadgenError, Result};
use crate::record::{RequestRecord, Trace};
use crate::sse::{SseEvent, SseParser};
use crate::workload::Prompt;

/// Everything that shapes a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// The server's base URL (`http://host:port`); the API's route is appended.
    pub base_url: String,
    pub api: Api,
    pub params: RequestParams,
    /// Sent as `Authorization: Bearer ...`.
    #[serde(skip)]
    pub api_key: Option<String>,
    /// Per request, from sending to the last byte; also bounds connecting.
    pub timeout: Duration,
}

/// A prompt with its body serialized once, so the hot path only copies bytes.
#[derive(Debug, Clone)]
pub struct PreparedPrompt {
    pub body: Bytes,
    pub prompt_index: usize,
    pub input_tokens: Option<u32>,
    pub max_new_tokens: u32,
}

/// A connection pool and the run's request shape; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    url: String,
    auth: Option<String>,
    /// SigV4 for AWS endpoints (`Api::Sagemaker`).
    signer: Option<AwsSigner>,
}

/// Error body text kept in a record; enough to read the server's message.
const ERROR_BODY_LIMIT: usize = 2048;

/// Resends after a pooled keep-alive connection turned out closed. Servers
/// such as llama.cpp's llama-server announce keep-alive yet close the
/// connection after a streamed response; a closed loop that sends its next
/// request at once races that close. The server never read the request, so
/// resending is safe (Go's net/http, k6's client, does the same). The time
/// lost stays inside the request's latency, and the record counts the retries.
const STALE_CONNECTION_RETRIES: u32 = 3;

/// Whether the connection closed before any response byte (hyper's
/// "incomplete message").
fn is_stale_connection(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message();
        }
        cur = c.source();
    }
    false
}

/// Why an exchange failed, before it becomes a record.
struct Failure(ErrorKind, String);

impl Client {
    /// A client for `config`.
    pub fn new(config: ClientConfig) -> Result<Self> {
        if config.api == Api::Sagemaker {
            return Err(LoadgenError::config(
                "--api",
                "sagemaker requests are signed: build the client with Client::signed",
            ));
        }
        Self::build(config, None)
    }

    /// A client whose requests `signer` signs (SageMaker endpoints).
    pub fn signed(config: ClientConfig, signer: AwsSigner) -> Result<Self> {
        Self::build(config, Some(signer))
    }

    fn build(config: ClientConfig, signer: Option<AwsSigner>) -> Result<Self> {
        if config.timeout.is_zero() {
            return Err(LoadgenError::config("--timeout", "must be more than 0"));
        }
        let http = reqwest::Client::builder()
            // Loopback benchmarks must not detour through a proxy from the environment.
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        let url = format!(
            "{}{}",
            config.base_url.trim_end_matches('/'),
            config.api.path(config.params.stream)
        );
        let auth = config.api_key.as_ref().map(|k| format!("Bearer {k}"));
        Ok(Self {
            http,
            inner: Arc::new(Inner {
                config,
                url,
                auth,
                signer,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The underlying HTTP client (for side routes such as `/tokenize`).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The full URL requests go to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Serializes a prompt's body.
    pub fn prepare(&self, prompt_index: usize, prompt: &Prompt) -> PreparedPrompt {
        let c = &self.inner.config;
        let body = c.api.body(prompt, &c.params).to_string();
        PreparedPrompt {
            body: Bytes::from(body),
            prompt_index,
            input_tokens: prompt.input_tokens,
            max_new_tokens: prompt.max_new_tokens,
        }
    }

    /// Sends `prompt` now; latencies count from `scheduled` (which may be in
    /// the past: open-loop lateness is part of the measurement). Never fails:
    /// every failure is a record.
    pub async fn send(
        &self,
        index: u64,
        prompt: &PreparedPrompt,
        scheduled: Instant,
        epoch: Instant,
    ) -> RequestRecord {
        let sent = Instant::now();
        let mut trace = Trace::new(epoch, scheduled, sent);
        let timeout = self.inner.config.timeout;
        let failure = match tokio::time::timeout(timeout, self.exchange(prompt, &mut trace)).await {
            Ok(Ok(())) => None,
            Ok(Err(Failure(kind, why))) => Some((kind, why)),
            Err(_) => {
                trace.end = Some(Instant::now());
                Some((
                    ErrorKind::Timeout,
                    format!("no complete response within {timeout:?}"),
                ))
            }
        };
        trace.finish(
            index,
            prompt.prompt_index,
            prompt.input_tokens,
            prompt.max_new_tokens,
            failure,
        )
    }

    /// SigV4 headers for one request body (signed anew for each attempt,
    /// as AWS's SDKs do: a signature carries its time).
    async fn aws_headers(&self, body: &[u8]) -> Result<Vec<(String, String)>, Failure> {
        let Some(signer) = &self.inner.signer else {
            return Ok(Vec::new());
        };
        let fail = |e: LoadgenError| Failure(ErrorKind::Connect, e.to_string());
        let credentials = signer.credentials().await.map_err(fail)?;
        signer
            .sign(
                &credentials,
                std::time::SystemTime::now(),
                "POST",
                &self.inner.url,
                &[("content-type", "application/json")],
                body,
            )
            .map_err(fail)
    }

    async fn exchange(&self, prompt: &PreparedPrompt, t: &mut Trace) -> Result<(), Failure> {
        let inner = &*self.inner;
        let mut resp = loop {
            let mut req = self
                .http
                .post(&inner.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(prompt.body.clone());
            if let Some(auth) = &inner.auth {
                req = req.header(reqwest::header::AUTHORIZATION, auth);
            }
            for (name, value) in self.aws_headers(&prompt.body).await? {
                req = req.header(name, value);
            }
            match req.send().await {
                Ok(r) => break r,
                Err(e)
                    if t.connection_retries < STALE_CONNECTION_RETRIES
                        && is_stale_connection(&e) =>
                {
                    t.connection_retries += 1;
                }
                Err(e) => return Err(Failure(ErrorKind::Connect, error_chain(&e))),
            }
        };
        let status = resp.status();
        t.http_status = Some(status.as_u16());
        t.server_ms_per_token = resp
            .headers()
            .get("x-time-per-token")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .and_then(|ms| Duration::try_from_secs_f64(ms / 1e3).ok());

        if !status.is_success() {
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                if body.len() < ERROR_BODY_LIMIT {
                    body.extend_from_slice(&chunk);
                }
            }
            t.end = Some(Instant::now());
            body.truncate(ERROR_BODY_LIMIT);
            let text = String::from_utf8_lossy(&body);
            return Err(Failure(
                ErrorKind::from_status(status.as_u16()),
                format!("HTTP {status}: {}", text.trim()),
            ));
        }
        if inner.config.params.stream {
            self.read_stream(resp, t).await
        } else {
            self.read_body(resp, t).await
        }
    }

    async fn read_stream(&self, mut resp: reqwest::Response, t: &mut Trace) -> Result<(), Failure> {
        let api = self.inner.config.api;
        let mut parser = SseParser::new();
        // SageMaker wraps the container's SSE bytes in event-stream frames.
        let mut frames = (api == Api::Sagemaker).then(PayloadParts::new);
        let mut events: Vec<SseEvent> = Vec::new();
        let mut finished = false;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    t.end = Some(Instant::now());
                    return Err(Failure(ErrorKind::BrokenStream, error_chain(&e)));
                }
            };
            let now = Instant::now();
            match frames.as_mut() {
                None => parser.feed(&chunk, &mut events),
                Some(frames) => {
                    let parts = frames.feed(&chunk).map_err(|e| {
                        t.end = Some(now);
                        Failure(ErrorKind::StreamError, e)
                    })?;
                    for part in parts {
                        parser.feed(&part, &mut events);
                    }
                }
            }
            let (mut tokens, mut token_events) = (0u32, 0u32);
            for ev in events.drain(..) {
                if ev.event.as_deref() == Some("error") {
                    t.end = Some(now);
                    return Err(Failure(ErrorKind::StreamError, ev.data));
                }
                let info = api.parse_event(&ev.data).map_err(|e| {
                    t.end = Some(now);
                    Failure(ErrorKind::InvalidBody, e)
                })?;
                if let Some(err) = info.error {
                    t.end = Some(now);
                    return Err(Failure(ErrorKind::StreamError, err));
                }
                if info.tokens > 0 {
                    tokens += info.tokens;
                    token_events += 1;
                }
                if info.reported_tokens.is_some() {
                    t.reported_tokens = info.reported_tokens;
                }
                finished |= info.finished;
            }
            t.on_tokens(now, tokens, token_events);
        }
        t.end = Some(Instant::now());
        let cut_frame = frames.as_ref().is_some_and(PayloadParts::is_mid_frame);
        if !finished || parser.is_mid_event() || cut_frame {
            return Err(Failure(
                ErrorKind::BrokenStream,
                "the stream ended before the final event".into(),
            ));
        }
        Ok(())
    }

    async fn read_body(&self, mut resp: reqwest::Response, t: &mut Trace) -> Result<(), Failure> {
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                Ok(None) => break,
                Err(e) => {
                    t.end = Some(Instant::now());
                    return Err(Failure(ErrorKind::BrokenStream, error_chain(&e)));
                }
            }
        }
        t.end = Some(Instant::now());
        let info = self
            .inner
            .config
            .api
            .parse_body(&body)
            .map_err(|e| Failure(ErrorKind::InvalidBody, e))?;
        t.reported_tokens = info.reported_tokens;
        Ok(())
    }
}

/// reqwest's top-level message is often just "error sending request"; the
/// cause (connection refused, reset) is what a reader needs.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
