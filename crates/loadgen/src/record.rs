//! One request, measured: the per-request metrics of `METRICS.md`, derived
//! from raw instants in exactly one place ([`Trace::finish`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::units::{as_ms, as_ms_opt, as_ms_vec};

/// How a request ended (`METRICS.md`: success, failed, dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Completed with a valid body.
    Success,
    /// An error status, a broken stream or a timeout.
    Failed,
    /// An open-loop arrival the generator could not send (in-flight cap).
    Dropped,
}

/// Where `output_tokens` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCountSource {
    /// The server's count (TGI `details.generated_tokens`, OpenAI
    /// `usage.completion_tokens`).
    Server,
    /// The server reported none: the number of token events (flagged).
    Events,
    /// In a summary: some requests of each kind.
    Mixed,
}

/// One line of `requests.jsonl`. Instants are milliseconds since the level's
/// start; `*_ms` fields are durations in milliseconds; absent values are null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Order of scheduling within the level, from 0.
    pub index: u64,
    pub outcome: Outcome,
    pub error_kind: Option<ErrorKind>,
    /// The server's message, or what broke.
    pub error: Option<String>,
    pub http_status: Option<u16>,
    /// When the load model wanted the request sent.
    #[serde(with = "as_ms")]
    pub scheduled_at: Duration,
    /// When it was handed to the connection (null if dropped).
    #[serde(with = "as_ms_opt")]
    pub sent_at: Option<Duration>,
    #[serde(with = "as_ms_opt")]
    pub queue_client_ms: Option<Duration>,
    #[serde(with = "as_ms_opt")]
    pub ttft_ms: Option<Duration>,
    #[serde(with = "as_ms_opt")]
    pub e2e_ms: Option<Duration>,
    pub output_tokens: Option<u32>,
    pub output_tokens_source: Option<TokenCountSource>,
    /// Streamed events that carried at least one token.
    pub token_events: u32,
    #[serde(with = "as_ms_opt")]
    pub tpot_ms: Option<Duration>,
    #[serde(with = "as_ms_opt")]
    pub ms_per_token: Option<Duration>,
    #[serde(with = "as_ms_opt")]
    pub server_ms_per_token: Option<Duration>,
    /// Inter-token latency samples of this request.
    #[serde(with = "as_ms_vec")]
    pub itl_ms: Vec<Duration>,
    pub input_tokens: Option<u32>,
    pub max_new_tokens: u32,
    /// Position of the prompt in the workload.
    pub prompt_index: usize,
    /// Resends after a reused connection was found closed by the server.
    pub connection_retries: u32,
}

impl RequestRecord {
    /// An arrival that was never sent.
    pub fn dropped(
        index: u64,
        scheduled_at: Duration,
        prompt_index: usize,
        max_new_tokens: u32,
    ) -> Self {
        Self {
            index,
            outcome: Outcome::Dropped,
            error_kind: None,
            error: Some("in-flight cap reached".into()),
            http_status: None,
            scheduled_at,
            sent_at: None,
            queue_client_ms: None,
            ttft_ms: None,
            e2e_ms: None,
            output_tokens: None,
            output_tokens_source: None,
            token_events: 0,
            tpot_ms: None,
            ms_per_token: None,
            server_ms_per_token: None,
            itl_ms: Vec::new(),
            input_tokens: None,
            max_new_tokens,
            prompt_index,
            connection_retries: 0,
        }
    }

    /// When the response ended (`scheduled_at + e2e_ms`).
    pub fn completed_at(&self) -> Option<Duration> {
        self.e2e_ms.map(|e| self.scheduled_at + e)
    }
}

/// Raw instants gathered while a request runs.
#[derive(Debug)]
pub struct Trace {
    pub epoch: Instant,
    pub scheduled: Instant,
    pub sent: Instant,
    pub first_token: Option<Instant>,
    last_token: Option<Instant>,
    pub end: Option<Instant>,
    pub itl: Vec<Duration>,
    pub token_events: u32,
    pub tokens_seen: u32,
    pub reported_tokens: Option<u32>,
    pub server_ms_per_token: Option<Duration>,
    pub http_status: Option<u16>,
    pub connection_retries: u32,
}

impl Trace {
    /// A trace for a request scheduled at `scheduled` and sent at `sent`.
    pub fn new(epoch: Instant, scheduled: Instant, sent: Instant) -> Self {
        Self {
            epoch,
            scheduled,
            sent,
            first_token: None,
            last_token: None,
            end: None,
            itl: Vec::new(),
            token_events: 0,
            tokens_seen: 0,
            reported_tokens: None,
            server_ms_per_token: None,
            http_status: None,
            connection_retries: 0,
        }
    }

    /// `tokens` generated tokens arrived at `at` in `events` events. Events
    /// that arrive in one network read are one delivery: the gap since the
    /// previous delivery is spread over all its tokens (`METRICS.md`: gap
    /// divided by the tokens the event carries).
    pub fn on_tokens(&mut self, at: Instant, tokens: u32, events: u32) {
        if tokens == 0 {
            return;
        }
        match self.last_token {
            None => self.first_token = Some(at),
            Some(prev) => {
                let gap = at.saturating_duration_since(prev);
                self.itl.push(gap / tokens);
            }
        }
        self.last_token = Some(at);
        self.token_events += events;
        self.tokens_seen += tokens;
    }

    /// The record, with every derived metric.
    pub fn finish(
        self,
        index: u64,
        prompt_index: usize,
        input_tokens: Option<u32>,
        max_new_tokens: u32,
        failure: Option<(ErrorKind, String)>,
    ) -> RequestRecord {
        let since = |t: Instant| t.saturating_duration_since(self.scheduled);
        let ttft = self.first_token.map(since);
        let e2e = self.end.map(since);
        let (output_tokens, source) = match (self.reported_tokens, self.tokens_seen) {
            (Some(n), _) => (Some(n), Some(TokenCountSource::Server)),
            (None, n) if n > 0 => (Some(n), Some(TokenCountSource::Events)),
            _ => (None, None),
        };
        let tpot = match (e2e, ttft, output_tokens) {
            (Some(e), Some(f), Some(n)) if n > 1 => Some(e.saturating_sub(f) / (n - 1)),
            _ => None,
        };
        let ms_per_token = match (e2e, output_tokens) {
            (Some(e), Some(n)) if n > 0 => Some(e / n),
            _ => None,
        };
        let (outcome, error_kind, error) = match failure {
            None => (Outcome::Success, None, None),
            Some((k, e)) => (Outcome::Failed, Some(k), Some(e)),
        };
        RequestRecord {
            index,
            outcome,
            error_kind,
            error,
            http_status: self.http_status,
            scheduled_at: self.scheduled.saturating_duration_since(self.epoch),
            sent_at: Some(self.sent.saturating_duration_since(self.epoch)),
            queue_client_ms: Some(self.sent.saturating_duration_since(self.scheduled)),
            ttft_ms: ttft,
            e2e_ms: e2e,
            output_tokens,
            output_tokens_source: source,
            token_events: self.token_events,
            tpot_ms: tpot,
            ms_per_token,
            server_ms_per_token: self.server_ms_per_token,
            itl_ms: self.itl,
            input_tokens,
            max_new_tokens,
            prompt_index,
            connection_retries: self.connection_retries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn derived_metrics_follow_the_definitions() {
        let epoch = Instant::now();
        let scheduled = epoch + ms(10);
        let mut t = Trace::new(epoch, scheduled, scheduled + ms(2));
        t.on_tokens(scheduled + ms(100), 1, 1);
        t.on_tokens(scheduled + ms(120), 1, 1);
        // Two events in one read: the gap is shared by their tokens.
        t.on_tokens(scheduled + ms(160), 2, 2);
        t.end = Some(scheduled + ms(161));
        t.reported_tokens = Some(4);
        let r = t.finish(3, 0, None, 4, None);
        assert_eq!(r.outcome, Outcome::Success);
        assert_eq!(r.scheduled_at, ms(10));
        assert_eq!(r.queue_client_ms, Some(ms(2)));
        assert_eq!(r.ttft_ms, Some(ms(100)));
        assert_eq!(r.e2e_ms, Some(ms(161)));
        assert_eq!(r.itl_ms, [ms(20), ms(20),]);
        // (161 - 100) / (4 - 1)
        assert_eq!(
            r.tpot_ms,
            Some(Duration::from_micros(20_333) + Duration::from_nanos(333))
        );
        assert_eq!(r.ms_per_token, Some(Duration::from_micros(40_250)));
        assert_eq!(r.output_tokens_source, Some(TokenCountSource::Server));
        assert_eq!(r.token_events, 4);
    }

    #[test]
    fn one_token_has_no_tpot_and_event_counts_are_flagged() {
        let epoch = Instant::now();
        let mut t = Trace::new(epoch, epoch, epoch);
        t.on_tokens(epoch + ms(5), 1, 1);
        t.on_tokens(epoch + ms(5), 0, 1);
        t.end = Some(epoch + ms(6));
        let r = t.finish(0, 0, None, 1, None);
        assert_eq!(r.output_tokens, Some(1));
        assert_eq!(r.output_tokens_source, Some(TokenCountSource::Events));
        assert_eq!(r.tpot_ms, None);
        assert!(r.itl_ms.is_empty());
        let line = serde_json::to_value(&r).unwrap();
        assert_eq!(line["ttft_ms"], 5.0);
        assert_eq!(line["output_tokens_source"], "events");
    }
}
