//! servebench's load generator: drives any TGI- or OpenAI-compatible endpoint
//! and measures it with the definitions of `METRICS.md` (repository's shared
//! docs), one record per request, coordinated-omission-safe.
//!
//! The request path, top-down:
//! - [`workload`] makes the prompts (fixed text, a JSONL dataset, or synthetic
//!   prompts of a given token length);
//! - [`load`] decides *when* each request is due (closed loop: a virtual user
//!   became free; open loop: an arrival drawn from a schedule) — that instant is
//!   the request's `scheduled_at`, and every latency is measured from it;
//! - [`client`] sends it with the [`api`] flavour's body, reads the stream
//!   through the one [`sse`] parser, and returns a [`RequestRecord`];
//! - [`summary`] turns the records of one level into a [`RunSummary`] with
//!   percentiles from the one routine in [`stats`];
//! - [`writers`] write `summary.json`, `summary.csv`, `requests.jsonl` and the
//!   final table; [`progress`] shows a bar on a terminal, plain lines elsewhere.
//!
//! [`run_level`] ties one level together (warm-up, pause, measured window).

pub mod api;
pub mod aws;
pub mod client;
pub mod error;
pub mod load;
pub mod progress;
pub mod record;
mod run;
pub mod slo;
pub mod sse;
pub mod stats;
pub mod summary;
pub mod sweep;
pub mod units;
pub mod workload;
pub mod writers;

pub use api::Api;
pub use client::{Client, ClientConfig};
pub use error::{ErrorKind, LoadgenError, Result};
pub use load::{Arrival, LoadModel, StopCondition};
pub use record::{Outcome, RequestRecord, TokenCountSource};
pub use run::{run_level, Cancel, LevelConfig, LevelResult};
pub use slo::Slo;
pub use stats::Distribution;
pub use summary::RunSummary;
pub use workload::{Prompt, Prompts};
