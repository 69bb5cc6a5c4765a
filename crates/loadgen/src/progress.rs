//! Live progress: a bar (requests done, tokens/s, errors) when stderr is a
//! terminal, a plain line every few seconds otherwise (CI logs, files).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::load::StopCondition;
use crate::record::{Outcome, RequestRecord};
use crate::summary::RunSummary;

/// Receives the run's events; called from the generator's hot path, so
/// implementations must be cheap.
pub trait Progress: Send + Sync {
    /// A free-form note (warm-up, pause).
    fn message(&self, text: &str);
    /// The measured window of a level begins.
    fn level_started(&self, label: &str, stop: &StopCondition);
    /// A request finished (or was dropped).
    fn request_done(&self, record: &RequestRecord);
    /// A level's summary is ready.
    fn level_finished(&self, summary: &RunSummary);
}

/// Shows nothing (library use, tests).
pub struct NoProgress;

impl Progress for NoProgress {
    fn message(&self, _: &str) {}
    fn level_started(&self, _: &str, _: &StopCondition) {}
    fn request_done(&self, _: &RequestRecord) {}
    fn level_finished(&self, _: &RunSummary) {}
}

/// How often plain lines are printed.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Progress on stderr.
pub struct ConsoleProgress {
    state: Mutex<State>,
    terminal: bool,
}

struct State {
    label: String,
    started: Instant,
    last_line: Instant,
    done: u64,
    failed: u64,
    dropped: u64,
    tokens: u64,
    bar: Option<ProgressBar>,
}

impl State {
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let tok_s = if secs > 0.0 {
            self.tokens as f64 / secs
        } else {
            0.0
        };
        format!(
            "{}: {} done, {} failed, {} dropped, {:.1} tok/s, {:.0}s",
            self.label, self.done, self.failed, self.dropped, tok_s, secs
        )
    }
}

impl ConsoleProgress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        Self::with_terminal(std::io::stderr().is_terminal())
    }

    /// Forces one of the two forms.
    pub fn with_terminal(terminal: bool) -> Self {
        let now = Instant::now();
        Self {
            terminal,
            state: Mutex::new(State {
                label: String::new(),
                started: now,
                last_line: now,
                done: 0,
                failed: 0,
                dropped: 0,
                tokens: 0,
                bar: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for ConsoleProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for ConsoleProgress {
    fn message(&self, text: &str) {
        match &self.lock().bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn level_started(&self, label: &str, stop: &StopCondition) {
        let mut s = self.lock();
        let now = Instant::now();
        (s.label, s.started, s.last_line) = (label.to_string(), now, now);
        (s.done, s.failed, s.dropped, s.tokens) = (0, 0, 0, 0);
        if self.terminal {
            // Requests when counted, seconds otherwise.
            let len = stop
                .requests
                .or(stop.duration.map(|d| d.as_secs()))
                .unwrap_or(0);
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{bar:30} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(s.line());
            s.bar = Some(bar);
        } else {
            eprintln!("{label}: started");
        }
    }

    fn request_done(&self, r: &RequestRecord) {
        let mut s = self.lock();
        match r.outcome {
            Outcome::Success => {
                s.done += 1;
                s.tokens += u64::from(r.output_tokens.unwrap_or(0));
            }
            Outcome::Failed => s.failed += 1,
            Outcome::Dropped => s.dropped += 1,
        }
        let now = Instant::now();
        if let Some(bar) = &s.bar {
            // indicatif rate-limits drawing; the message is only rebuilt ~10x/s.
            if now.duration_since(s.last_line) >= Duration::from_millis(100) {
                let pos = match bar.length() {
                    Some(len) if len > 0 && s.done + s.failed + s.dropped <= len => {
                        s.done + s.failed + s.dropped
                    }
                    _ => s.started.elapsed().as_secs(),
                };
                bar.set_position(pos);
                bar.set_message(s.line());
                s.last_line = now;
            }
        } else if now.duration_since(s.last_line) >= LINE_EVERY {
            eprintln!("{}", s.line());
            s.last_line = now;
        }
    }

    fn level_finished(&self, summary: &RunSummary) {
        let mut s = self.lock();
        if let Some(bar) = s.bar.take() {
            bar.finish_and_clear();
        }
        let p50 = |d: &Option<crate::Distribution>| {
            d.map_or("-".to_string(), |d| format!("{:.1}", d.p50))
        };
        eprintln!(
            "{}: {} ok, {} failed, {} dropped in {:.1}s; {:.1} tok/s; ttft_ms p50 {}; tpot_ms p50 {}",
            summary.info.level,
            summary.success,
            summary.failed,
            summary.dropped,
            summary.duration_s.as_secs_f64(),
            summary.output_throughput_tok_s,
            p50(&summary.ttft_ms),
            p50(&summary.tpot_ms),
        );
    }
}
