//! Load models: *when* each request is due. Closed loop (fixed concurrency,
//! k6's constant-VUs) in `closed.rs`, open loop (arrival rate) in `open.rs`,
//! arrival processes in `arrival.rs`.

mod arrival;
pub(crate) mod closed;
pub(crate) mod open;

pub use arrival::{Arrival, ArrivalSchedule};

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How requests are issued during one level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoadModel {
    /// `concurrency` virtual users, each sending its next request as soon as
    /// the previous one ends.
    Closed { concurrency: u32 },
    /// Arrivals at `rate_s` per second whatever the server does; at most
    /// `max_in_flight` outstanding, later arrivals are `dropped`.
    Open {
        rate_s: f64,
        arrival: Arrival,
        max_in_flight: u32,
    },
}

impl LoadModel {
    /// A short name for tables and progress lines (`c=5`, `r=2/s poisson`).
    pub fn label(&self) -> String {
        match self {
            Self::Closed { concurrency } => format!("c={concurrency}"),
            Self::Open {
                rate_s, arrival, ..
            } => format!("r={rate_s}/s {}", arrival.as_str()),
        }
    }

    /// The concurrency in the 2023 study's throughput formula (closed loop only).
    pub fn concurrency(&self) -> Option<u32> {
        match self {
            Self::Closed { concurrency } => Some(*concurrency),
            Self::Open { .. } => None,
        }
    }
}

/// When a level stops issuing requests; in-flight requests still finish
/// (bounded by the per-request timeout), as k6's graceful stop lets them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StopCondition {
    /// No request is scheduled at or after this long from the level's start.
    pub duration: Option<Duration>,
    /// At most this many requests are scheduled (dropped ones included).
    pub requests: Option<u64>,
}
