//! The inference side of the server: validated requests go into a queue, a
//! dedicated thread runs the continuous batch over the model, and each
//! request gets its tokens back as a stream of events. HTTP handlers only
//! talk to [`Infer`]; they never touch the model.

mod batcher;
pub mod constraint;
mod prefix_cache;
mod queue;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use servebench_engine::kv_cache::KvPool;
use servebench_engine::{Engine, FinishReason, GenerateParams};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::config::ServerConfig;
use crate::error::ApiError;
use prefix_cache::PrefixCache;

pub use queue::BatchLimits;

/// A request that passed validation: prompt tokens and generation rules.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub prompt_ids: Vec<u32>,
    pub params: GenerateParams,
    /// Compute each token's log-probability (costs a pass over the vocabulary).
    pub want_logprobs: bool,
    /// Also list this many most likely tokens at each step (0: none).
    pub top_logprobs: usize,
    /// The grammar the output must follow, compiled.
    pub constraint: Option<constraint::Constraint>,
    /// When the HTTP request arrived (for `x-total-time`).
    pub received_at: Instant,
    /// Time spent parsing, tokenizing and validating.
    pub validation: Duration,
}

impl ValidRequest {
    /// Tokens this request may occupy in the batch: prompt plus generation.
    pub fn token_budget(&self) -> usize {
        self.prompt_ids.len() + self.params.max_new_tokens
    }
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedToken {
    pub id: u32,
    /// The text this token completed (empty for special tokens and for
    /// bytes still waiting for the rest of a UTF-8 character).
    pub text: String,
    pub logprob: Option<f32>,
    /// The `top_logprobs` most likely tokens at this step with their
    /// log-probabilities, most likely first.
    pub top: Vec<(u32, f32)>,
    /// First token only, when asked: the log-probability of each prompt
    /// token after the first, given the tokens before it.
    pub prompt_logprobs: Vec<f32>,
    /// An end-of-generation or other control token.
    pub special: bool,
}

/// How a generation ended, with its timings.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub finish_reason: FinishReason,
    /// Tokens generated, counting an end-of-generation token as TGI does.
    pub generated_tokens: usize,
    pub prompt_tokens: usize,
    /// The seed used, when tokens were sampled.
    pub seed: Option<u64>,
    /// From entering the queue to joining the batch.
    pub queue: Duration,
    /// From joining the batch to the last token (prefill included).
    pub inference: Duration,
}

impl Ended {
    /// TGI's `time_per_token`: inference time per generated token, queue
    /// excluded (the 2023 study's latency).
    pub fn time_per_token(&self) -> Duration {
        self.inference / self.generated_tokens.max(1) as u32
    }
}

/// What a request's stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Token(GeneratedToken),
    /// The last token, with how the generation ended.
    Last(GeneratedToken, Ended),
    Error(String),
}

/// A request accepted by the batcher: its events, and the concurrency
/// slot it holds until dropped.
pub struct Generation {
    pub events: mpsc::UnboundedReceiver<StreamEvent>,
    _permit: OwnedSemaphorePermit,
}

/// A queued request as the batcher sees it.
struct Entry {
    request: ValidRequest,
    events: mpsc::UnboundedSender<StreamEvent>,
    queued_at: Instant,
}

/// The handle HTTP handlers use to run requests.
#[derive(Clone)]
pub struct Infer {
    tx: mpsc::UnboundedSender<Entry>,
    permits: Arc<Semaphore>,
    alive: Arc<AtomicBool>,
}

impl Infer {
    /// Starts the batcher thread over `engine`. The thread ends once every
    /// handle is dropped and the last request has finished.
    pub fn start(engine: Arc<Engine>, config: &ServerConfig) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let alive = Arc::new(AtomicBool::new(true));
        let limits = BatchLimits::from(config);
        let pool = KvPool::new(engine.model.kv_shape(), config.max_batch_total_tokens);
        let prefixes = PrefixCache::new(config.prefix_cache_bytes);
        let flag = alive.clone();
        let thread = std::thread::Builder::new()
            .name("batcher".into())
            .spawn(move || batcher::run(&engine, limits, &pool, prefixes, rx, &flag))
            .expect("spawning the batcher thread");
        let infer = Self {
            tx,
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            alive,
        };
        (infer, thread)
    }

    /// A concurrency slot, or `Overloaded` when all are taken.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)
    }

    /// Queues a request; its events arrive on the returned generation.
    pub fn submit(
        &self,
        request: ValidRequest,
        permit: OwnedSemaphorePermit,
    ) -> Result<Generation, ApiError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let entry = Entry {
            request,
            events: events_tx,
            queued_at: Instant::now(),
        };
        self.tx
            .send(entry)
            .map_err(|_| ApiError::Generation("the model thread has stopped".into()))?;
        Ok(Generation {
            events,
            _permit: permit,
        })
    }

    /// Whether the batcher thread is running.
    pub fn is_healthy(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

impl Generation {
    /// Waits for the whole generation: the tokens and how it ended.
    pub async fn collect(mut self) -> Result<(Vec<GeneratedToken>, Ended), ApiError> {
        let mut tokens = Vec::new();
        while let Some(event) = self.events.recv().await {
            match event {
                StreamEvent::Token(t) => tokens.push(t),
                StreamEvent::Last(t, end) => {
                    tokens.push(t);
                    return Ok((tokens, end));
                }
                StreamEvent::Error(e) => return Err(ApiError::Generation(e)),
            }
        }
        Err(ApiError::Generation(
            "the model thread stopped before the generation ended".into(),
        ))
    }
}
