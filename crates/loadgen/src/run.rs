//! One load level from start to summary: warm-up requests, the pause, the
//! measured window under the chosen load model, then the statistics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::client::{Client, PreparedPrompt};
use crate::error::{LoadgenError, Result};
use crate::load::{closed, open, LoadModel, StopCondition};
use crate::progress::Progress;
use crate::record::RequestRecord;
use crate::slo::Slo;
use crate::summary::{LevelInfo, RunSummary};
use crate::workload::Prompts;

/// One level's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelConfig {
    pub load: LoadModel,
    pub stop: StopCondition,
    /// Requests sent one by one before the level, not measured (the study: 2).
    pub warmup: u32,
    /// Idle time between warm-up and the measured window (the study: 10 s).
    pub pause: Duration,
    /// Objectives for `goodput_s`.
    pub slo: Vec<Slo>,
    /// Seeds the arrival schedule.
    pub seed: u64,
}

impl LevelConfig {
    /// Rejects settings that would never stop or never send.
    pub fn validate(&self) -> Result<()> {
        if self.stop.duration.is_none() && self.stop.requests.is_none() {
            return Err(LoadgenError::config(
                "stop",
                "give --duration and/or --requests",
            ));
        }
        match self.load {
            LoadModel::Closed { concurrency: 0 } => {
                Err(LoadgenError::config("--concurrency", "must be at least 1"))
            }
            LoadModel::Open {
                rate_s,
                max_in_flight,
                ..
            } => {
                if !(rate_s.is_finite() && rate_s > 0.0) {
                    Err(LoadgenError::config(
                        "--rate",
                        format!("{rate_s} is not a positive rate"),
                    ))
                } else if max_in_flight == 0 {
                    Err(LoadgenError::config(
                        "--max-in-flight",
                        "must be at least 1",
                    ))
                } else {
                    Ok(())
                }
            }
            LoadModel::Closed { .. } => Ok(()),
        }
    }
}

/// A level's outcome: the summary and every request record (dropped and
/// failed included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelResult {
    pub summary: RunSummary,
    pub records: Vec<RequestRecord>,
}

/// Tells running levels to stop (Ctrl-C). Clones share one flag.
#[derive(Debug, Clone)]
pub struct Cancel(watch::Receiver<bool>);

/// The side that raises [`Cancel`].
#[derive(Debug)]
pub struct CancelHandle(watch::Sender<bool>);

impl CancelHandle {
    /// Stops every level that holds the matching [`Cancel`].
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

impl Cancel {
    /// A flag and its trigger.
    pub fn new() -> (CancelHandle, Cancel) {
        let (tx, rx) = watch::channel(false);
        (CancelHandle(tx), Cancel(rx))
    }

    /// Whether it was raised.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when raised; never, if the trigger was dropped unraised.
    pub async fn cancelled(&mut self) {
        if self.0.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What the load models share while a level runs.
pub(crate) struct LevelCtx {
    pub client: Client,
    pub epoch: Instant,
    pub cancel: Cancel,
    pub seed: u64,
    prompts: Vec<PreparedPrompt>,
    next_prompt: AtomicU64,
    issued: AtomicU64,
    stop: StopCondition,
    records: Mutex<Vec<RequestRecord>>,
    progress: Arc<dyn Progress>,
}

impl LevelCtx {
    /// The index of a request due at `due`, or `None` once the stop
    /// condition (or Ctrl-C) says no more.
    pub fn claim(&self, due: Instant) -> Option<u64> {
        if self.cancel.is_cancelled() {
            return None;
        }
        if let Some(d) = self.stop.duration {
            if due.saturating_duration_since(self.epoch) >= d {
                return None;
            }
        }
        let index = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.stop.requests {
            Some(n) if index >= n => None,
            _ => Some(index),
        }
    }

    /// The next prompt, round-robin.
    pub fn next_prompt(&self) -> &PreparedPrompt {
        let i = self.next_prompt.fetch_add(1, Ordering::Relaxed) as usize;
        &self.prompts[i % self.prompts.len()]
    }

    /// Keeps a finished request.
    pub fn push(&self, record: RequestRecord) {
        self.progress.request_done(&record);
        // A poisoned lock only means another task panicked mid-push; the
        // records already there are still whole.
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.push(record);
    }
}

/// Runs one level against `client`: `warmup` requests one after another
/// (unmeasured), `pause`, then the load model until the stop condition, and
/// summarizes. On Ctrl-C it returns what was measured so far with
/// `interrupted` set; in-flight requests are abandoned, not recorded.
pub async fn run_level(
    client: &Client,
    prompts: &Prompts,
    config: &LevelConfig,
    progress: Arc<dyn Progress>,
    cancel: &Cancel,
) -> Result<LevelResult> {
    config.validate()?;
    let label = config.load.label();
    let prepared: Vec<PreparedPrompt> = prompts
        .all()
        .iter()
        .enumerate()
        .map(|(i, p)| client.prepare(i, p))
        .collect();
    let mut cancel = cancel.clone();

    if config.warmup > 0 {
        progress.message(&format!("{label}: {} warm-up request(s)", config.warmup));
        for i in 0..config.warmup {
            let now = Instant::now();
            let p = &prepared[i as usize % prepared.len()];
            tokio::select! {
                r = client.send(u64::from(i), p, now, now) => {
                    if let (Some(kind), Some(e)) = (r.error_kind, r.error) {
                        progress.message(&format!("{label}: warm-up request failed ({}): {e}", kind.as_str()));
                    }
                }
                _ = cancel.cancelled() => break,
            }
        }
    }
    if !config.pause.is_zero() && !cancel.is_cancelled() {
        progress.message(&format!("{label}: pause {:?}", config.pause));
        tokio::select! {
            _ = tokio::time::sleep(config.pause) => {}
            _ = cancel.cancelled() => {}
        }
    }

    progress.level_started(&label, &config.stop);
    let ctx = Arc::new(LevelCtx {
        client: client.clone(),
        epoch: Instant::now(),
        cancel: cancel.clone(),
        seed: config.seed,
        prompts: prepared,
        next_prompt: AtomicU64::new(0),
        issued: AtomicU64::new(0),
        stop: config.stop,
        records: Mutex::new(Vec::new()),
        progress: progress.clone(),
    });
    if !cancel.is_cancelled() {
        match config.load {
            LoadModel::Closed { concurrency } => closed::run(ctx.clone(), concurrency).await,
            LoadModel::Open {
                rate_s,
                arrival,
                max_in_flight,
            } => open::run(ctx.clone(), rate_s, arrival, max_in_flight).await,
        }
    }
    let mut records = std::mem::take(&mut *ctx.records.lock().unwrap_or_else(|e| e.into_inner()));
    records.sort_by_key(|r| r.index);
    let c = client.config();
    let info = LevelInfo {
        level: label,
        load: config.load,
        api: c.api,
        url: client.url().to_string(),
        model_name: c.params.model_name.clone(),
        stream: c.params.stream,
        interrupted: cancel.is_cancelled(),
        slo: config.slo.clone(),
    };
    let summary = RunSummary::from_records(info, &records);
    progress.level_finished(&summary);
    Ok(LevelResult { summary, records })
}
